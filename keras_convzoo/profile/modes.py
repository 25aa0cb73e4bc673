"""Execution modes: how a model runs in each of ``MODES``, as a call that ``benchmark`` can time.

TensorFlow modes (``eager``, ``graph``, ``xla``) call the model and bring
the output to the host (``.numpy()``). File modes convert the model with
``keras_convzoo.export`` and run the file in its runtime: ``tflite`` and
``tflite_int8`` invoke the LiteRT interpreter (``ai_edge_litert``) on the
batch-1 file resized to the batch (sample by sample, with a note, when a
reshape fixed batch 1 in the file); ``onnxruntime`` runs ``session.run``
on the ``to_onnx`` file (dynamic batch). Preparing a mode is split in two
so that a file is converted once and run at several batch sizes:
``mode_source`` (a function or the file's bytes) and ``source_call``.
"""

import contextlib
import os
import sys
import tempfile

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.profile.timing import check_positive_int

MODES = ("eager", "graph", "xla", "tflite", "tflite_int8", "onnxruntime")
#: Modes that time an exported file in its runtime (LiteRT, onnxruntime) rather than TensorFlow.
FILE_MODES = ("tflite", "tflite_int8", "onnxruntime")
#: Representative samples of the ``tflite_int8`` calibration (seeded random data).
INT8_CALIBRATION_SAMPLES = 8
#: ``keras_convzoo.export.to_tflite`` lowering options the TFLite modes accept (``tflite_options``).
TFLITE_OPTIONS = ("depthwise_max_taps", "dense_group_channels")


# -------------------------------------------------------------- arguments
def check_modes(modes):
    """``modes`` checked: a mode of ``MODES`` or a non-empty sequence of distinct ones.

    Args:
        modes: a mode name or a sequence of them.

    Returns:
        A tuple of mode names, in the given order.

    Raises:
        ValueError: naming ``modes``, for anything else.

    Example:
    >>> check_modes("graph")
    ('graph',)
    """
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


def check_tflite_options(tflite_options):
    """``tflite_options`` checked: a dict of ``TFLITE_OPTIONS`` keys with valid values.

    Args:
        tflite_options: a dict, or None (``to_tflite``'s defaults).

    Returns:
        A new dict (empty for None).

    Raises:
        TypeError: for a value that is not a dict or None.
        ValueError: for unknown keys or bad values.
    """
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


def default_threads():
    """Threads TensorFlow uses for one op (its intra-op setting, else the CPU count)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def check_num_threads(num_threads):
    """``num_threads`` checked: a positive int, or None for ``default_threads()``.

    Args:
        num_threads: TFLite interpreter and onnxruntime threads, or None.

    Returns:
        The thread count as an int.

    Raises:
        ValueError: naming ``num_threads``, for a value that is not a positive int.
    """
    return default_threads() if num_threads is None else check_positive_int("num_threads", num_threads)


# ------------------------------------------------------------------ calls
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
    (mode,) = check_modes((mode,))
    num_threads = check_num_threads(num_threads)
    tflite_options = check_tflite_options(tflite_options)
    x = np.asarray(x, dtype="float32")
    return source_call(mode, mode_source(model, tuple(x.shape[1:]), mode, tflite_options), x, num_threads)


def mode_source(model, shape, mode, tflite_options=None):
    """What ``mode`` runs, prepared once for every batch size.

    Args:
        model: a built single-input ``keras.Model``.
        shape: one input's shape, without batch.
        mode: one of ``MODES``.
        tflite_options: checked ``to_tflite`` lowering options (a dict), or None.

    Returns:
        For a TensorFlow mode, a function of a batch tensor (a
        ``tf.function`` outside eager mode, traced once per batch size);
        for a mode of ``FILE_MODES``, the exported file as bytes.
    """
    if mode in FILE_MODES:
        return _file_content(model, shape, mode, tflite_options)
    if mode == "eager":
        return lambda t: model(t, training=False)
    return tf.function(lambda t: model(t, training=False), jit_compile=(mode == "xla"))


def source_call(mode, source, x, num_threads):
    """``(call, note)`` running the ``mode_source`` of ``mode`` on the batch ``x``.

    Args:
        mode: one of ``MODES``.
        source: what ``mode_source`` returned for ``mode``.
        x: the input batch, a float32 array.
        num_threads: TFLite interpreter and onnxruntime threads.

    Returns:
        ``(call, note)`` as in ``mode_call``.
    """
    if mode not in FILE_MODES:
        x = tf.constant(x)
        return (lambda: _to_host(source(x))), None
    if mode != "onnxruntime":
        return _tflite_call(source, x, num_threads)
    from keras_convzoo.export import onnx_session

    session = onnx_session(source, num_threads=num_threads)
    feed = {session.get_inputs()[0].name: x}
    output = session.get_outputs()[0].name
    return (lambda: session.run([output], feed)[0]), None


def _to_host(outputs):
    first = tf.nest.flatten(outputs)[0]
    return first.numpy() if hasattr(first, "numpy") else np.asarray(first)


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
