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
"""

import contextlib
import csv
import dataclasses
import os
import sys
import tempfile
import time
from typing import Optional, Tuple

import numpy as np

from keras_convzoo.backend import keras, tf
from keras_convzoo.progress import check_progress

MODES = ("eager", "graph", "xla", "tflite", "tflite_int8", "onnxruntime")
#: Modes that time an exported file in its runtime (LiteRT, onnxruntime) rather than TensorFlow.
FILE_MODES = ("tflite", "tflite_int8", "onnxruntime")
#: Representative samples of the ``tflite_int8`` calibration (seeded random data).
INT8_CALIBRATION_SAMPLES = 8
#: ``keras_convzoo.export.to_tflite`` lowering options the TFLite modes accept (``tflite_options``).
TFLITE_OPTIONS = ("depthwise_max_taps", "dense_group_channels")


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """One (model, mode, batch size) measurement.

    Attributes:
        model: model name.
        mode: one of ``MODES``.
        batch_size: inputs per call.
        input_shape: one input's shape, without batch.
        median_ms: median wall time of one call in milliseconds (None when
            the mode failed).
        iqr_ms: interquartile range of the call times (75th minus 25th
            percentile), milliseconds.
        min_ms: fastest call, milliseconds.
        repeats: timed calls.
        macs: multiply-accumulates of one input (``count_flops``), or None.
        error: why the mode could not run (None when it ran).
        note: how the time was taken when it differs from one batched call
            (a TFLite file that could not be resized runs sample by sample).
    """

    model: str
    mode: str
    batch_size: int
    input_shape: Tuple[int, ...]
    median_ms: Optional[float]
    iqr_ms: Optional[float]
    min_ms: Optional[float]
    repeats: int
    macs: Optional[int] = None
    error: Optional[str] = None
    note: Optional[str] = None

    @property
    def ok(self):
        """True when the mode ran."""
        return self.error is None

    @property
    def images_per_s(self):
        """Throughput: ``batch_size`` inputs per median call."""
        return None if not self.ok else 1e3 * self.batch_size / self.median_ms

    def to_dict(self):
        """The fields and ``images_per_s`` as a flat dict (CSV row)."""
        row = dataclasses.asdict(self)
        row["input_shape"] = "x".join(str(d) for d in self.input_shape)
        row["images_per_s"] = self.images_per_s
        return row


# -------------------------------------------------------------- arguments
def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        bound = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {bound}. Received: {name}={value!r}")
    return int(value)


def _check_rounds(repeats, rounds):
    """``rounds`` checked: a positive int no larger than ``repeats`` (each round times every call)."""
    rounds = _check_positive_int("rounds", rounds)
    if repeats < rounds:
        raise ValueError(f"`repeats` must be >= `rounds` ({rounds}). Received: repeats={repeats}")
    return rounds


def _check_batch_sizes(batch_sizes):
    if isinstance(batch_sizes, (int, np.integer)) and not isinstance(batch_sizes, bool):
        batch_sizes = (batch_sizes,)
    try:
        sizes = tuple(batch_sizes)
    except TypeError:
        sizes = None
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in sizes):
        raise ValueError(
            f"`batch_sizes` must be a non-empty sequence of positive ints. Received: batch_sizes={batch_sizes!r}"
        )
    return tuple(dict.fromkeys(int(b) for b in sizes))


def _check_modes(modes):
    if isinstance(modes, str):
        modes = (modes,)
    try:
        modes = tuple(modes)
    except TypeError:
        modes = ()
    bad = [m for m in modes if m not in MODES]
    if not modes or bad or len(set(modes)) != len(modes):
        raise ValueError(
            f"`modes` must be a non-empty sequence of distinct modes from {list(MODES)}. Received: modes={modes!r}"
        )
    return modes


def _check_tflite_options(tflite_options):
    """``tflite_options`` checked: a dict of ``TFLITE_OPTIONS`` keys with valid values (a new dict)."""
    from keras_convzoo.export.lowering import check_dense_group_channels, check_depthwise_max_taps

    if tflite_options is None:
        return {}
    if not isinstance(tflite_options, dict):
        raise TypeError(
            f"`tflite_options` must be a dict of {list(TFLITE_OPTIONS)} values, or None. "
            f"Received: tflite_options={tflite_options!r}"
        )
    unknown = sorted(k for k in tflite_options if k not in TFLITE_OPTIONS)
    if unknown:
        raise ValueError(
            f"`tflite_options` accepts the keys {list(TFLITE_OPTIONS)}. Received unknown keys: {unknown}"
        )
    if "depthwise_max_taps" in tflite_options:
        check_depthwise_max_taps(tflite_options["depthwise_max_taps"], allow_auto=True)
    if "dense_group_channels" in tflite_options:
        check_dense_group_channels(tflite_options["dense_group_channels"])
    return dict(tflite_options)


def _check_input_size(input_size, spatial_dims):
    if input_size is None:
        return None
    if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
        input_size = (input_size,) * spatial_dims
    try:
        sizes = tuple(input_size)
    except TypeError:
        sizes = ()
    if (
        len(sizes) != spatial_dims
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes)
    ):
        raise ValueError(
            f"`input_size` must be a positive int or {spatial_dims} positive ints (one per spatial dim). "
            f"Received: input_size={input_size!r}"
        )
    return tuple(int(s) for s in sizes)


def _resolve_model(model_or_name, input_size, model_kwargs):
    """``(model, name, input shape without batch)``."""
    if isinstance(model_or_name, str):
        from keras_convzoo.applications import create_model, get_spec

        spec = get_spec(model_or_name)
        sizes = _check_input_size(input_size, spec.spatial_dims)
        shape = sizes + (spec.input_channels,) if sizes else spec.default_input_shape
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("input_shape", shape)
        kwargs.setdefault("weights", None)
        return create_model(model_or_name, **kwargs), model_or_name, shape
    if model_kwargs:
        raise ValueError("`model_kwargs` is for a registry name; received a model.")
    if not isinstance(model_or_name, keras.Model):
        raise TypeError(
            f"`model_or_name` must be a registry name or a keras.Model. Received: {type(model_or_name).__name__}"
        )
    model = model_or_name
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise ValueError("benchmark needs a built single-input model.")
    model_shape = [None if d is None else int(d) for d in tuple(inputs[0].shape)[1:]]
    spatial = model_shape[:-1]
    sizes = _check_input_size(input_size, len(spatial))
    if sizes is None:
        if None in spatial:
            raise ValueError(
                f"The model has unknown spatial sizes {tuple(model_shape)}: pass `input_size`. "
                "Received: input_size=None"
            )
        sizes = tuple(spatial)
    for known, size in zip(spatial, sizes):
        if known is not None and known != size:
            raise ValueError(
                f"`input_size` disagrees with the model's input {tuple([None] + model_shape)}. "
                f"Received: input_size={input_size!r}"
            )
    if model_shape[-1] is None:
        raise ValueError("The model's channel axis is unknown (None).")
    return model, model.name, tuple(sizes) + (model_shape[-1],)


# ----------------------------------------------------------------- timing
def times_ms(call, warmup=3, repeats=15):
    """Wall times (ms) of ``repeats`` calls of ``call()`` after ``warmup`` untimed ones.

    Args:
        call: a function of no arguments that finishes its work before returning.
        warmup: untimed calls first.
        repeats: timed calls.

    Returns:
        A list of ``repeats`` floats, in call order.

    Example:
    >>> float(np.median(times_ms(lambda: sum(range(1000)), repeats=5))) > 0
    True
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def interleaved_times(calls, warmup=3, repeats=15, rounds=5):
    """Wall times (ms) of several calls measured in alternating rounds.

    Each call is warmed up, then the calls take turns: ``rounds`` rounds,
    each giving every call an equal share of its ``repeats`` timed calls,
    the order rotating by one each round. A slow spell of the machine so
    falls on every call alike, which makes the ratios of their medians
    fair on a shared machine.

    Args:
        calls: a dict ``{label: call}``. A call is a function of no
            arguments that finishes its work before returning (e.g. from
            ``mode_call``), or an object with a ``time_ms(n)`` method that
            runs its work ``n`` times and returns the ``n`` times itself
            (work timed elsewhere, e.g. in another process).
        warmup: untimed calls of each first (>= 0).
        repeats: timed calls of each (>= ``rounds``).
        rounds: alternating rounds (>= 1).

    Returns:
        A dict ``{label: list of repeats floats}``; a call that raised maps
        to its exception and takes no further turns.

    Example:
    >>> times = interleaved_times({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, repeats=6, rounds=3)
    >>> sorted(times), len(times["a"])
    (['a', 'b'], 6)
    """
    if not isinstance(calls, dict) or not all(callable(c) or hasattr(c, "time_ms") for c in calls.values()):
        raise TypeError(
            "`calls` must be a dict of functions of no arguments (or objects with a `time_ms(n)` method). "
            f"Received: {type(calls).__name__}"
        )
    warmup = _check_positive_int("warmup", warmup, minimum=0)
    repeats = _check_positive_int("repeats", repeats)
    rounds = _check_rounds(repeats, rounds)

    def timed(call, n):
        return list(call.time_ms(n)) if hasattr(call, "time_ms") else times_ms(call, 0, n)

    shares = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    result = {label: [] for label in calls}
    live = []
    for label, call in calls.items():
        try:
            if warmup:
                timed(call, warmup)
            live.append(label)
        except Exception as error:
            result[label] = error
    for r, share in enumerate(shares):
        k = r % len(live) if live else 0
        for label in live[k:] + live[:k]:
            if isinstance(result[label], Exception):
                continue
            try:
                result[label] += timed(calls[label], share)
            except Exception as error:
                result[label] = error
    return result


def mode_call(model, mode, x, num_threads=None, tflite_options=None):
    """A function of no arguments that runs ``model`` on the batch ``x`` in ``mode``.

    The same call ``benchmark`` times: TensorFlow modes bring the output to
    the host; TFLite modes convert ``model`` with
    ``keras_convzoo.export.to_tflite`` (float32, or full int8 calibrated on
    seeded random samples) and invoke the LiteRT interpreter resized to the
    batch (one sample at a time when a reshape fixed batch 1 in the file);
    ``"onnxruntime"`` converts with ``keras_convzoo.export.to_onnx`` and
    runs an ``onnx_session``.

    Args:
        model: a built single-input ``keras.Model``.
        mode: one of ``MODES``.
        x: the input batch, a float32 array of the model's input shape.
        num_threads: TFLite interpreter and onnxruntime threads (default ``default_threads()``).
        tflite_options: ``to_tflite`` lowering options of the TFLite modes,
            a dict with keys of ``TFLITE_OPTIONS`` (e.g.
            ``{"dense_group_channels": 8}``); None: its defaults.

    Returns:
        ``(call, note)``: ``note`` is None, or says how a TFLite file that
        could not be resized is run.

    Example:
    >>> call, note = mode_call(model, "tflite", np.zeros((1, 224, 224, 3), "float32"))
    >>> times = times_ms(call, warmup=2, repeats=10)
    """
    (mode,) = _check_modes((mode,))
    num_threads = default_threads() if num_threads is None else _check_positive_int("num_threads", num_threads)
    tflite_options = _check_tflite_options(tflite_options)
    x = np.asarray(x, dtype="float32")
    if mode in FILE_MODES:
        return _file_call(mode, _file_content(model, tuple(x.shape[1:]), mode, tflite_options), x, num_threads)
    return _host_call(_tf_function(model, mode), tf.constant(x)), None


def _to_host(outputs):
    first = tf.nest.flatten(outputs)[0]
    return first.numpy() if hasattr(first, "numpy") else np.asarray(first)


def _host_call(fn, x):
    return lambda: _to_host(fn(x))


def _tf_function(model, mode):
    if mode == "eager":
        return lambda t: model(t, training=False)
    return tf.function(lambda t: model(t, training=False), jit_compile=(mode == "xla"))


@contextlib.contextmanager
def _quiet_native_output():
    """Silences what native code prints on descriptors 1 and 2 (the converter's and calibrator's logs)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (embedded interpreters)
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _file_content(model, shape, mode, tflite_options=None):
    """The exported file of a file mode, as bytes: TFLite (``_tflite_content``) or ONNX."""
    if mode != "onnxruntime":
        return _tflite_content(model, shape, mode, tflite_options)
    from keras_convzoo.export import to_onnx

    with tempfile.TemporaryDirectory(prefix="convzoo_benchmark_") as folder:
        path = os.path.join(folder, "model.onnx")
        with _quiet_native_output():
            to_onnx(model, path, input_shape=shape, verify=False)
        with open(path, "rb") as f:
            return f.read()


def _file_call(mode, content, x, num_threads):
    """``(call, note)`` running the file of a file mode on the batch ``x``."""
    if mode != "onnxruntime":
        return _tflite_call(content, x, num_threads)
    from keras_convzoo.export import onnx_session

    session = onnx_session(content, num_threads=num_threads)
    feed = {session.get_inputs()[0].name: x}
    output = session.get_outputs()[0].name
    return (lambda: session.run([output], feed)[0]), None


def _tflite_content(model, shape, mode, tflite_options=None):
    """The batch-1 TFLite flatbuffer ``to_tflite`` writes for ``mode``, with the ``tflite_options`` lowerings."""
    from keras_convzoo.export import to_tflite

    kwargs = dict(tflite_options or {}, input_shape=shape, verify=False)
    if mode == "tflite_int8":
        rng = np.random.default_rng(1)
        samples = list(rng.standard_normal((INT8_CALIBRATION_SAMPLES, 1) + shape).astype("float32"))
        kwargs.update(quantization="int8", representative_data=samples)
    with tempfile.TemporaryDirectory(prefix="convzoo_benchmark_") as folder:
        path = os.path.join(folder, f"{mode}.tflite")
        with _quiet_native_output():
            to_tflite(model, path, **kwargs)
        with open(path, "rb") as f:
            return f.read()


def _tflite_call(content, x, num_threads):
    """``(call, note)``: one timed call runs the file on the batch ``x``.

    The batch-1 file is resized to the batch; when a reshape in the file
    fixed batch 1 (resizing fails), the samples are invoked one by one and
    ``note`` says so.
    """
    from keras_convzoo.export import tflite_interpreter

    def interpreter_for(batch):
        interpreter = tflite_interpreter(content, num_threads=num_threads)
        detail = interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != batch.shape:
            interpreter.resize_tensor_input(detail["index"], list(batch.shape), strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], batch.astype(detail["dtype"]))
        output = interpreter.get_output_details()[0]["index"]
        interpreter.invoke()  # fails here when the file cannot run at this batch
        return interpreter, output

    try:
        interpreter, output = interpreter_for(x)
    except RuntimeError:
        if x.shape[0] == 1:
            raise
        interpreter, output = interpreter_for(x[:1])
        samples = [x[i : i + 1].astype(interpreter.get_input_details()[0]["dtype"]) for i in range(x.shape[0])]
        index = interpreter.get_input_details()[0]["index"]

        def one_by_one():
            for sample in samples:
                interpreter.set_tensor(index, sample)
                interpreter.invoke()
                interpreter.get_tensor(output)

        return one_by_one, "per-sample invokes (the file could not be resized to the batch)"

    def call():
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return call, None


def _row(name, mode, batch, shape, repeats, macs, times=None, error=None, note=None):
    if error is not None:
        return BenchmarkResult(name, mode, batch, shape, None, None, None, repeats, macs, error)
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return BenchmarkResult(name, mode, batch, shape, float(median), float(q75 - q25), float(min(times)), repeats, macs,
                           note=note)


def _error_text(error):
    from keras_convzoo.export.report import first_error_line

    return f"{type(error).__name__}: {first_error_line(error)}"


def default_threads():
    """Threads TensorFlow uses for one op (its intra-op setting, else the CPU count)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


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
    batch_sizes, modes, warmup, repeats, num_threads, progress = _check_timing_args(
        batch_sizes, modes, warmup, repeats, num_threads, progress
    )
    tflite_options = _check_tflite_options(tflite_options)
    entry = _prepare(model_or_name, input_size, model_kwargs, fuse, count_macs)
    return _time_entries([entry], batch_sizes, modes, warmup, repeats, 1, num_threads, progress, tflite_options)


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
    batch_sizes, modes, warmup, repeats, num_threads, progress = _check_timing_args(
        batch_sizes, modes, warmup, repeats, num_threads, progress
    )
    rounds = _check_rounds(repeats, rounds)
    tflite_options = _check_tflite_options(tflite_options)
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
        model, name, shape, macs = _prepare(model, input_size, None, fuse, count_macs)
        entries.append((model, name if label is None else str(label), shape, macs))
    labels = [e[1] for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"`models` labels must be distinct. Received: {labels}")
    shapes = {e[2] for e in entries}
    if len(shapes) != 1:
        received = dict(zip(labels, (e[2] for e in entries)))
        raise ValueError(f"`models` must take the same input shape. Received: {received}")
    return _time_entries(entries, batch_sizes, modes, warmup, repeats, rounds, num_threads, progress, tflite_options)


def _check_timing_args(batch_sizes, modes, warmup, repeats, num_threads, progress):
    batch_sizes = _check_batch_sizes(batch_sizes)
    modes = _check_modes(modes)
    warmup = _check_positive_int("warmup", warmup, minimum=0)
    repeats = _check_positive_int("repeats", repeats)
    num_threads = default_threads() if num_threads is None else _check_positive_int("num_threads", num_threads)
    return batch_sizes, modes, warmup, repeats, num_threads, check_progress(progress)


def _prepare(model_or_name, input_size, model_kwargs, fuse, count_macs):
    """``(model, name, input shape without batch, MACs or None)``, fused when asked."""
    if not isinstance(fuse, bool):
        raise ValueError(f"`fuse` must be a bool. Received: fuse={fuse!r}")
    model, name, shape = _resolve_model(model_or_name, input_size, model_kwargs)
    if fuse:
        from keras_convzoo.deploy import fuse as fuse_model

        model = fuse_model(model)
    macs = None
    if count_macs:
        from keras_convzoo.profile.flops import count_flops

        try:
            macs = count_flops(model, shape).total
        except Exception:  # a model the counter cannot walk still gets timed
            macs = None
    return model, name, shape, macs


def _time_entries(entries, batch_sizes, modes, warmup, repeats, rounds, num_threads, progress, tflite_options):
    """Rows for every (mode, batch, entry); the entries' calls alternate over ``rounds`` rounds."""
    shape = entries[0][2]
    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(-1.0, 1.0, (b,) + shape).astype("float32") for b in batch_sizes}
    rows = []
    total = len(modes) * len(batch_sizes)
    done = 0
    for mode in modes:
        if progress is not None:
            progress(done, total)
        sources = []  # per entry: a tf.function, TFLite bytes, or the conversion error
        for model, _, _, _ in entries:
            if mode not in FILE_MODES:
                sources.append(_tf_function(model, mode))  # one function per mode, traced once per batch size
                continue
            try:
                sources.append(_file_content(model, shape, mode, tflite_options))
            except Exception as error:
                sources.append(error)
        for b in batch_sizes:
            calls, errors, notes = {}, {}, {}
            for i, source in enumerate(sources):
                try:
                    if isinstance(source, Exception):
                        raise source
                    if isinstance(source, bytes):
                        calls[i], notes[i] = _file_call(mode, source, inputs[b], num_threads)
                    else:
                        calls[i] = _host_call(source, tf.constant(inputs[b]))
                except Exception as error:
                    errors[i] = _error_text(error)
            times = interleaved_times(calls, warmup, repeats, rounds)
            errors.update({i: _error_text(t) for i, t in times.items() if isinstance(t, Exception)})
            for i, (_, name, _, macs) in enumerate(entries):
                if i in errors:
                    rows.append(_row(name, mode, b, shape, repeats, macs, error=errors[i]))
                else:
                    rows.append(_row(name, mode, b, shape, repeats, macs, times[i], note=notes.get(i)))
            done += 1
            if progress is not None:
                progress(done, total)
    return rows


# ---------------------------------------------------------------- reports
def format_table(rows):
    """Text table of ``rows``: model, mode, batch, median, IQR, images/s, MACs."""
    from keras_convzoo.profile.flops import format_macs

    header = f"{'model':<22}{'mode':<13}{'batch':>5}{'median ms':>11}{'IQR ms':>9}{'img/s':>9}{'MACs':>9}"
    lines = [header]
    for r in rows:
        macs = format_macs(r.macs) if r.macs else "-"
        if r.ok:
            lines.append(
                f"{r.model:<22}{r.mode:<13}{r.batch_size:>5}{r.median_ms:>11.2f}{r.iqr_ms:>9.2f}"
                f"{r.images_per_s:>9.1f}{macs:>9}" + (f"  ({r.note})" if r.note else "")
            )
        else:
            lines.append(f"{r.model:<22}{r.mode:<13}{r.batch_size:>5}  failed: {r.error}")
    return "\n".join(lines)


CSV_FIELDS = ("model", "mode", "batch_size", "input_shape", "median_ms", "iqr_ms", "min_ms", "repeats",
              "images_per_s", "macs", "error", "note")


def write_csv(rows, path):
    """Writes ``rows`` to a CSV file with the columns of ``CSV_FIELDS``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items() if k in CSV_FIELDS})


def plot_latency_vs_macs(rows, path, title=None):
    """Saves a PNG: median latency per input (log scale) against MACs, one point per (model, mode) per batch size.

    Needs matplotlib (``pip install keras_convzoo[all]``). Failed rows are left out.

    Args:
        rows: ``BenchmarkResult`` rows (with ``macs``).
        path: the ``.png`` file.
        title: figure title.

    Returns:
        The path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if r.ok and r.macs]
    if not usable:
        raise ValueError("No successful row with MACs to plot.")
    batches = sorted({r.batch_size for r in usable})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.5), squeeze=False)
    markers = dict(zip(MODES, "osD^v"))
    for ax, batch in zip(axes[0], batches):
        for mode in MODES:
            points = [r for r in usable if r.batch_size == batch and r.mode == mode]
            if not points:
                continue
            ax.scatter([r.macs / 1e9 for r in points], [r.median_ms / batch for r in points],
                       marker=markers.get(mode, "o"), label=mode)
        for model in dict.fromkeys(r.model for r in usable if r.batch_size == batch):
            best = min((r for r in usable if r.batch_size == batch and r.model == model), key=lambda r: r.median_ms)
            ax.annotate(model, (best.macs / 1e9, best.median_ms / batch), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("GMACs per input")
        ax.set_ylabel("median latency per input (ms)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
