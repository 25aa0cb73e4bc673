"""Latency of a model in each execution mode: eager, graph, XLA, TFLite fp32 and int8, onnxruntime.

Every mode runs the same seeded input in this process. TensorFlow modes
include bringing the output to the host (``.numpy()``); TFLite modes time
``invoke()`` plus reading the output with the LiteRT interpreter
(``ai_edge_litert``) on the file ``keras_convzoo.export.to_tflite`` writes
(batch 1, resized to the batch; run sample by sample, with a ``note``, when
a reshape fixed batch 1 in the file); the onnxruntime mode times
``session.run`` on the ``keras_convzoo.export.to_onnx`` file (dynamic
batch), output on the host. A mode that cannot run a model (XLA on a model
with run-time shapes, a conversion that fails) gives a row with its error
text instead of a time.

This module holds the drivers, ``benchmark`` (one model) and ``compare``
(several, timed in alternating rounds). Their pieces live beside it:
``keras_convzoo.profile.timing`` (timing loops, statistics,
``BenchmarkResult``), ``keras_convzoo.profile.modes`` (``MODES``, one call
per mode), ``keras_convzoo.profile.models`` (the model to time) and
``keras_convzoo.profile.output`` (table, CSV, plot). Their public names
stay importable from here too.
"""

from typing import NamedTuple

import numpy as np

from keras_convzoo.profile.models import prepare_model
from keras_convzoo.profile.modes import (
    FILE_MODES,
    INT8_CALIBRATION_SAMPLES,
    MODES,
    TFLITE_OPTIONS,
    check_modes,
    check_num_threads,
    check_tflite_options,
    default_threads,
    mode_call,
    mode_source,
    source_call,
)
from keras_convzoo.profile.output import CSV_FIELDS, format_table, plot_latency_vs_macs, write_csv
from keras_convzoo.profile.timing import (
    BenchmarkResult,
    check_batch_sizes,
    check_positive_int,
    check_rounds,
    error_text,
    interleaved_times,
    result_row,
    times_ms,
)
from keras_convzoo.progress import check_progress

__all__ = [
    "benchmark",
    "compare",
    # defined in the modules beside this one, importable from here as before the split
    "MODES",
    "FILE_MODES",
    "INT8_CALIBRATION_SAMPLES",
    "TFLITE_OPTIONS",
    "BenchmarkResult",
    "times_ms",
    "interleaved_times",
    "mode_call",
    "default_threads",
    "format_table",
    "CSV_FIELDS",
    "write_csv",
    "plot_latency_vs_macs",
]


def benchmark(
    model_or_name,
    batch_sizes=(1, 8),
    input_size=224,
    modes=MODES,
    warmup=3,
    repeats=15,
    fuse=False,
    num_threads=None,
    model_kwargs=None,
    count_macs=True,
    progress=None,
    tflite_options=None,
):
    """Times a model in several execution modes and batch sizes.

    Modes: ``"eager"`` (``model(x, training=False)``), ``"graph"``
    (``tf.function``), ``"xla"`` (``tf.function(jit_compile=True)``),
    ``"tflite"`` (float32 file of ``keras_convzoo.export.to_tflite`` run
    with the LiteRT interpreter), ``"tflite_int8"`` (full-integer file
    calibrated on seeded random inputs, float input and output) and
    ``"onnxruntime"`` (the ``keras_convzoo.export.to_onnx`` file, dynamic
    batch, in an onnxruntime CPU session with every graph optimisation,
    ``keras_convzoo.export.onnx_session``). Each
    (mode, batch size) is called ``warmup`` times, then timed ``repeats``
    times on the same seeded uniform input; a TFLite file is converted once
    and resized to each batch. A mode that fails (XLA on a model whose
    shapes are only known at run time, a conversion error) gives a row
    whose ``error`` holds the reason; nothing is raised for it.

    Threads: TensorFlow modes use the process's intra-op threads (set them
    with ``tf.config.threading.set_intra_op_parallelism_threads`` before
    TensorFlow starts); TFLite and onnxruntime use ``num_threads``
    (default: the same number, ``default_threads()``).

    Args:
        model_or_name: a registry name (the model is built with
            ``weights=None`` at ``input_size``) or a built single-input
            ``keras.Model``.
        batch_sizes: positive ints.
        input_size: spatial side (int) or sides (tuple); None: the model's
            static size or the variant's default size. Known model
            dimensions must agree.
        modes: a sequence of ``MODES``.
        warmup: untimed calls before timing (>= 0).
        repeats: timed calls (>= 1).
        fuse: time ``keras_convzoo.deploy.fuse(model)`` (BN folding and
            re-parameterisation), the inference form.
        num_threads: TFLite interpreter and onnxruntime threads.
        model_kwargs: extra ``create_model`` arguments for a registry name
            (e.g. a variant's ``test_overrides`` for its tiny twin).
        count_macs: add ``count_flops`` MACs to the rows.
        progress: optional ``progress(done, total)`` called after each
            (mode, batch size), e.g. a ``keras_convzoo.progress.ProgressBar``.
        tflite_options: ``keras_convzoo.export.to_tflite`` lowering options
            of the TFLite files, a dict with keys of ``TFLITE_OPTIONS``
            (``depthwise_max_taps``, ``dense_group_channels``); None: its
            defaults.

    Returns:
        A list of ``BenchmarkResult`` rows, by mode then batch size.

    Raises:
        ValueError: for a bad ``batch_sizes``, ``input_size``, ``modes``,
            ``warmup``, ``repeats``, ``num_threads``, ``fuse`` or
            ``tflite_options`` values, or an unknown model name; the message
            names the argument.
        TypeError: for a ``tflite_options`` that is not a dict.

    Example:
    >>> rows = benchmark("mobilenetv2_100", batch_sizes=(1,), modes=("graph", "xla"), fuse=True)
    >>> [(r.mode, round(r.median_ms, 1)) for r in rows]
    """
    settings = _check_settings(batch_sizes, modes, warmup, repeats, 1, num_threads, progress, tflite_options)
    return _time_entries([prepare_model(model_or_name, input_size, model_kwargs, fuse, count_macs)], settings)


def compare(
    models,
    batch_sizes=(1, 8),
    input_size=224,
    modes=MODES,
    warmup=3,
    repeats=15,
    rounds=5,
    fuse=False,
    num_threads=None,
    count_macs=True,
    progress=None,
    tflite_options=None,
):
    """Times several models in the same modes, interleaved, for fair ratios.

    ``benchmark`` times one model after another, so a slow spell of the
    machine (another process, frequency changes) falls on one of them only.
    Here each (mode, batch size) prepares every model's call first, then
    times them in ``rounds`` alternating rounds (the order rotates each
    round), each round taking an equal share of the ``repeats`` timed
    calls of each model; the medians and spreads are over all of a model's
    calls. All models get the same seeded input, so they must take the
    same input shape.

    Args:
        models: a dict ``{label: model or registry name}`` (the label names
            the rows) or a sequence of models / names (labelled by name).
        batch_sizes: positive ints.
        input_size: spatial side(s), as in ``benchmark``; None: the models'
            static size.
        modes: a sequence of ``MODES``.
        warmup: untimed calls of each model before the rounds (>= 0).
        repeats: timed calls of each model (>= ``rounds``).
        rounds: alternating rounds (>= 1).
        fuse: time each model's ``keras_convzoo.deploy.fuse`` form.
        num_threads: TFLite interpreter and onnxruntime threads (default ``default_threads()``).
        count_macs: add ``count_flops`` MACs to the rows.
        progress: optional ``progress(done, total)`` per (mode, batch size).
        tflite_options: ``to_tflite`` lowering options of every model's
            TFLite files, as in ``benchmark``.

    Returns:
        A list of ``BenchmarkResult`` rows, by mode, then batch size, then
        model in the given order; ``model`` holds the label.

    Raises:
        ValueError: for bad arguments (the message names the argument), fewer
            than two models, repeated labels, or models whose input shapes
            differ.
        TypeError: for ``models`` or ``tflite_options`` of the wrong type.

    Example:
    >>> import keras
    >>> rows = compare({"ours": "mobilenetv2_100", "keras": keras.applications.MobileNetV2(weights=None)},
    ...                batch_sizes=(1,), modes=("tflite",), fuse=False)
    >>> ours, theirs = rows
    >>> ratio = ours.median_ms / theirs.median_ms
    """
    settings = _check_settings(batch_sizes, modes, warmup, repeats, rounds, num_threads, progress, tflite_options)
    if isinstance(models, dict):
        labelled = list(models.items())
    elif isinstance(models, (list, tuple)):
        labelled = [(None, m) for m in models]
    else:
        raise TypeError(
            f"`models` must be a dict {{label: model}} or a list of models. Received: {type(models).__name__}"
        )
    if len(labelled) < 2:
        raise ValueError(f"`models` must hold at least two models to compare. Received: {len(labelled)}")
    entries = []
    for label, model in labelled:
        model, name, shape, macs = prepare_model(model, input_size, None, fuse, count_macs)
        entries.append((model, name if label is None else str(label), shape, macs))
    labels = [e[1] for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"`models` labels must be distinct. Received: {labels}")
    shapes = {e[2] for e in entries}
    if len(shapes) != 1:
        received = dict(zip(labels, (e[2] for e in entries)))
        raise ValueError(f"`models` must take the same input shape. Received: {received}")
    return _time_entries(entries, settings)


class _Settings(NamedTuple):
    """The timing arguments of ``benchmark`` and ``compare``, checked."""

    batch_sizes: tuple
    modes: tuple
    warmup: int
    repeats: int
    rounds: int
    num_threads: int
    progress: object
    tflite_options: dict


def _check_settings(batch_sizes, modes, warmup, repeats, rounds, num_threads, progress, tflite_options):
    """The arguments both drivers share, checked in one place; each error names its argument."""
    batch_sizes = check_batch_sizes(batch_sizes)
    modes = check_modes(modes)
    warmup = check_positive_int("warmup", warmup, minimum=0)
    repeats = check_positive_int("repeats", repeats)
    num_threads = check_num_threads(num_threads)
    progress = check_progress(progress)
    rounds = check_rounds(repeats, rounds)
    return _Settings(batch_sizes, modes, warmup, repeats, rounds, num_threads, progress,
                     check_tflite_options(tflite_options))


def _time_entries(entries, settings):
    """Rows for every (mode, batch, entry); the entries' calls alternate over ``settings.rounds`` rounds.

    ``entries`` are ``(model, name, input shape, MACs)`` of ``prepare_model``, all of one input shape.
    """
    s = settings
    shape = entries[0][2]
    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(-1.0, 1.0, (b,) + shape).astype("float32") for b in s.batch_sizes}
    rows = []
    total = len(s.modes) * len(s.batch_sizes)
    done = 0
    for mode in s.modes:
        if s.progress is not None:
            s.progress(done, total)
        sources = []  # per entry: a function or a file (one per mode, run at every batch size), or the error
        for model, _, _, _ in entries:
            try:
                sources.append(mode_source(model, shape, mode, s.tflite_options))
            except Exception as error:
                sources.append(error)
        for b in s.batch_sizes:
            calls, errors, notes = {}, {}, {}
            for i, source in enumerate(sources):
                try:
                    if isinstance(source, Exception):
                        raise source
                    calls[i], notes[i] = source_call(mode, source, inputs[b], s.num_threads)
                except Exception as error:
                    errors[i] = error_text(error)
            times = interleaved_times(calls, s.warmup, s.repeats, s.rounds)
            errors.update({i: error_text(t) for i, t in times.items() if isinstance(t, Exception)})
            for i, (_, name, _, macs) in enumerate(entries):
                if i in errors:
                    rows.append(result_row(name, mode, b, shape, s.repeats, macs, error=errors[i]))
                else:
                    rows.append(result_row(name, mode, b, shape, s.repeats, macs, times[i], note=notes.get(i)))
            done += 1
            if s.progress is not None:
                s.progress(done, total)
    return rows
