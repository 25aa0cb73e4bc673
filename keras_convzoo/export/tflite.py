"""Export to TensorFlow Lite (fp32, float16, dynamic-range and full-integer int8).

The model is traced in a ``tf.function`` with a fixed input signature (batch
1; ``None`` spatial dimensions fixed to ``input_shape`` or to
``DEFAULT_SPATIAL_SIZE`` = 224), the concrete function is saved as the only
signature (``serving_default``, outputs ``output_0``, ``output_1``, ...) of a
temporary SavedModel beside the target file together with the variables it
reads, and ``tf.lite.TFLiteConverter.from_saved_model`` converts that; the
file is written, then run with the LiteRT interpreter (``ai_edge_litert``,
the runtime apps ship) on seeded random inputs and compared with the Keras
model. The same path works for Keras 3 and for tf_keras models.

Why a SavedModel (``docs/benchmarks/export-memory.md``): freezing the
concrete function into a GraphDef (``from_concrete_functions``) hands the
converter every weight as a GraphDef constant, which it copies about seven
times (Python GraphDef, serialized string, C++ string and GraphDef,
TensorFlow graph, MLIR), and TensorFlow's freezing also registers a frozen
copy of the function for the life of the process: RepLKNet-31B (303 MB of
weights) peaked at 6.6 GiB. From a SavedModel the converter restores the
variables itself: 3.4 GiB, the same ops and weights and the same outputs
(the file's tensor names and its signature differ). TensorFlow
quirk avoided here: when the converter is given a Keras 3 model as
``trackable_obj`` it saves the whole model, and that route keeps the Keras 3
variables as resource variables (``VAR_HANDLE`` / ``READ_VARIABLE`` ops) that
nothing initialises in the file (the interpreter then returns NaN); the
SavedModel written here holds nothing but the traced function and the
variables it reads, which no function assigns to, so the converter freezes
every one of them into a constant (checked on every file).

Grouped convolutions are traced in their native form (one TFLite ``CONV_2D``
with a grouped filter), and depthwise kernels of more than 25 taps as sums of
smaller ones (XNNPACK's fast one-pass kernels), see
``keras_convzoo.export.lowering``.

Quantization-aware-trained models (``keras_convzoo.quantization``, tf_keras)
are recognised by the fake-quant ops in their traced graph: their int8
conversion takes the ranges from those ops, so ``representative_data`` is
optional (it calibrates the tensors without a fake-quant op), and the file is
verified against the QAT model with ``QAT_INT8_MIN_SNR_DB``. TensorFlow 2.21
quirk worked around here: the converter validates its options once before it
has seen the graph, so ``TFLITE_BUILTINS_INT8`` without a representative
dataset is refused even for a QAT graph ("a `representative_dataset` must be
specified"); without ``representative_data`` a QAT model is therefore
converted with the default op set, and the result must be full-integer
(checked on the file: an op left in float raises ``ExportError`` naming it).
"""

import errno
import os
import re
import tempfile
import time
import warnings

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.export.lowering import (
    DEPTHWISE_MAX_TAPS,
    check_dense_group_channels,
    check_depthwise_max_taps,
    deployment_lowering,
    iter_layers,
)
from keras_convzoo.export.memory import calibrate_in_stages, lean_model_packing, release_memory
from keras_convzoo.progress import check_progress
from keras_convzoo.export.converter import converter_logs, first_error_line
from keras_convzoo.export.report import QUANTIZATIONS, ExportError, VerificationError, describe_tolerance
from keras_convzoo.export.verification import check_output_path, publish
from keras_convzoo.input_shapes import concrete_input_shape, model_input
from keras_convzoo.export.inputs import check_num_samples, data_samples, input_range, verification_inputs
from keras_convzoo.export.prepare import float32_form, keras_quantized_layers, prepare_for_export

_RESOURCE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")
_FAKE_QUANT_OPS = frozenset(
    {
        "FakeQuantWithMinMaxVars",
        "FakeQuantWithMinMaxVarsPerChannel",
        "FakeQuantWithMinMaxArgs",
        "QuantizeAndDequantizeV2",
        "QuantizeAndDequantizeV3",
        "QuantizeAndDequantizeV4",
    }
)


def tflite_interpreter(model, num_threads=None):
    """Opens a TFLite file (or its bytes) in the LiteRT interpreter (``ai_edge_litert``).

    The interpreter ``run_tflite``, the exporters' checks and the TFLite
    modes of ``keras_convzoo.profile.benchmark`` use; tensors are not yet
    allocated.

    Args:
        model: path of a ``.tflite`` file, or the flatbuffer's bytes.
        num_threads: interpreter threads (default: the interpreter's).

    Returns:
        An ``ai_edge_litert.interpreter.Interpreter``.

    Raises:
        ImportError: when ai-edge-litert is not installed, naming the pip command.
        ValueError: when ``num_threads`` is not a positive int.

    Example:
    >>> interpreter = tflite_interpreter("model.tflite", num_threads=2)
    >>> interpreter.allocate_tensors()
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Verifying and running TFLite files needs the LiteRT interpreter: "
            "`pip install ai-edge-litert` (or `pip install keras_convzoo[export]`)."
        ) from e
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise ValueError(f"`num_threads` must be a positive int or None. Received: num_threads={num_threads!r}")
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    return Interpreter(model_path=os.fspath(model), num_threads=num_threads)


#: Other spellings of the ``quantization`` values (the CLI's ``none``, ``fp16``...).
_QUANTIZATION_ALIASES = {"none": None, "fp32": None, "float32": None, "fp16": "float16", "float16": "float16",
                         "dynamic": "dynamic", "dynamic_range": "dynamic", "int8": "int8"}


def _normalize_quantization(quantization):
    """``quantization`` checked; strings matched case-insensitively, with aliases (``"INT8"``, ``"fp16"``, ``"none"``)."""
    if isinstance(quantization, str) and quantization.lower() in _QUANTIZATION_ALIASES:
        return _QUANTIZATION_ALIASES[quantization.lower()]
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization: {quantization!r}. Allowed values: {list(QUANTIZATIONS)} "
            "(None: float32, 'float16': float16 weights, 'dynamic': int8 weights with "
            "float activations, 'int8': full-integer with `representative_data`)."
        )
    return quantization


def _serving_function(model, full_shape, dtype, name, depthwise_max_taps, dense_group_channels=None):
    spec = tf.TensorSpec(full_shape, dtype, name=name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        outputs = tf.nest.flatten(model(x, training=False))
        return outputs[0] if len(outputs) == 1 else outputs

    try:
        with deployment_lowering(model, depthwise_max_taps, dense_group_channels):
            return serve.get_concrete_function()
    except Exception as e:
        raise ExportError(
            f"Tracing model '{getattr(model, 'name', '?')}' in a tf.function for export "
            f"failed: {type(e).__name__}: {first_error_line(e)}"
        ) from e


def is_quantization_aware(concrete):
    """True when a traced function contains fake-quant ops (a QAT model).

    Args:
        concrete: a ``tf.function`` concrete function.
    """
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return bool(ops & _FAKE_QUANT_OPS)


def _calibration_feed(samples, progress):
    """The converter's representative dataset, reporting ``progress(done, total)``.

    It also hands memory freed by the converter back to the system before
    the first sample and after the last (``memory.release_memory``): the
    calibration starts, and its result is written, from what is still in use
    rather than from the peak of the float conversion.
    """

    def feed():
        release_memory()
        for i, sample in enumerate(samples):
            yield [sample]
            if progress is not None:
                progress(i + 1, len(samples))
        release_memory()

    return feed


#: Signature key of the temporary SavedModel the converter reads (``_saved_serving_function``).
_SIGNATURE_KEY = "serving_default"


def _saved_serving_function(concrete, folder):
    """Writes ``concrete`` as the only signature of a SavedModel in ``folder``, with the variables it captures.

    The module saved holds nothing but those variables: no function assigns
    to them, so the converter freezes every one into a constant (module
    docstring).
    """
    module = tf.Module()
    module.captured_variables = list(concrete.graph.variables)
    tf.saved_model.save(module, folder, signatures={_SIGNATURE_KEY: concrete})


def _convert(model, concrete, quantization, samples, int8_io, progress=None, folder=None):
    """Converts ``concrete`` through a temporary SavedModel in ``folder`` (default: the system's temporary folder)."""
    with tempfile.TemporaryDirectory(prefix=".keras_convzoo-tflite-", dir=folder) as saved:
        try:
            _saved_serving_function(concrete, saved)
            converter = _saved_model_converter(saved)
        except Exception as e:
            os_error = _write_error(e)
            if os_error is not None:  # a full disk: as when the file itself is written
                raise os_error from e
            raise ExportError(
                f"Saving model '{getattr(model, 'name', '?')}' for the TFLite converter failed: "
                f"{type(e).__name__}: {first_error_line(e)}"
            ) from e
        release_memory()
        return _convert_saved(model, converter, quantization, samples, int8_io, progress)


def _saved_model_converter(folder):
    """``tf.lite.TFLiteConverter.from_saved_model(folder)`` for the SavedModel ``_saved_serving_function`` wrote.

    ``from_saved_model`` first loads the whole SavedModel in Python (the
    variables restored) only to check its signatures, then returns this same
    converter; the signature written here needs no check, and the load costs
    about a second and a copy of the weights. Where TensorFlow's converter
    class cannot be reached (another TensorFlow version), ``from_saved_model``.
    """
    try:
        from tensorflow.lite.python.lite import TFLiteSavedModelConverterV2

        converter = TFLiteSavedModelConverterV2(folder, {tf.saved_model.SERVING}, [_SIGNATURE_KEY])
    except (ImportError, TypeError):  # pragma: no cover - other TensorFlow versions
        converter = None
    if converter is None or not getattr(converter, "saved_model_dir", None):  # pragma: no cover
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=[_SIGNATURE_KEY])
    return converter


#: Errors of a failed write (TensorFlow reports them as text in its own error types).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)


def _write_error(error):
    """The ``OSError`` behind a failed write of the temporary SavedModel, else None."""
    if isinstance(error, OSError):
        return error
    text = str(error)
    for number in _WRITE_ERRNOS:
        if os.strerror(number) in text:
            return OSError(number, f"{os.strerror(number)} (writing the temporary SavedModel the TFLite converter "
                                   f"reads: {first_error_line(error)})")
    return None


def _convert_saved(model, converter, quantization, samples, int8_io, progress):
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if samples is not None:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = _calibration_feed(samples, progress)
        # else: a QAT graph without calibration data (module docstring); the
        # caller checks that the result is full-integer.
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # Emitted for every float-I/O int8 conversion; nothing to act on.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            with lean_model_packing():
                content = calibrate_in_stages(converter) if quantization == "int8" else converter.convert()
    except Exception as e:
        raise ExportError(
            f"TFLite conversion (tf.lite.TFLiteConverter, quantization={quantization!r}) of "
            f"model '{getattr(model, 'name', '?')}' failed: {first_error_line(e)}"
        ) from e
    leftovers = _resource_ops(content)
    if leftovers:
        raise ExportError(
            "TFLite conversion (tf.lite.TFLiteConverter) kept resource variables in the "
            f"file ({', '.join(leftovers)}), which the interpreter never initialises. "
            "Does a layer assign to a variable in call()?"
        )
    return content


def _resource_ops(content):
    """Names of variable ops left in a converted flatbuffer (empty when frozen)."""
    interpreter = tflite_interpreter(content)
    get_ops = getattr(interpreter, "_get_ops_details", None)
    if get_ops is None:  # pragma: no cover - older/newer interpreter
        return []
    return sorted({op["op_name"] for op in get_ops() if op["op_name"] in _RESOURCE_OPS})


def float_ops(content):
    """Ops of a TFLite flatbuffer that compute in floating point.

    The ``QUANTIZE`` of a float model input and the ``DEQUANTIZE`` to a float
    model output are not counted: they are the float interface of a
    full-integer file.

    Args:
        content: the flatbuffer bytes (or a path to a ``.tflite`` file).

    Returns:
        A sorted tuple of op names (each once); empty for a full-integer file.

    Example:
    >>> float_ops(open("m_int8.tflite", "rb").read())
    ()
    """
    interpreter = tflite_interpreter(content)
    get_ops = getattr(interpreter, "_get_ops_details", None)
    if get_ops is None:  # pragma: no cover - older/newer interpreter
        raise ExportError("This LiteRT interpreter cannot list a file's ops.")
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}

    def is_float(index):
        return index >= 0 and index in dtypes and np.issubdtype(dtypes[index], np.floating)

    found = set()
    for op in get_ops():
        inputs = [int(i) for i in op["inputs"]]
        outputs = [int(i) for i in op["outputs"]]
        if op["op_name"] == "QUANTIZE" and all(i in graph_inputs for i in inputs if is_float(i)):
            if not any(is_float(o) for o in outputs):
                continue
        if op["op_name"] == "DEQUANTIZE" and all(o in graph_outputs for o in outputs if is_float(o)):
            if not any(is_float(i) for i in inputs):
                continue
        if any(is_float(i) for i in inputs + outputs):
            found.add(op["op_name"])
    return tuple(sorted(found))


def _output_order(details, interpreter=None):
    """Output details in the order of the traced function's outputs.

    Files written by ``to_tflite`` have one signature whose outputs are named
    ``output_0``, ``output_1``, ... in that order; the interpreter lists the
    outputs by tensor index, which need not be that order. Files converted
    from a frozen concrete function (``TFLiteConverter.from_concrete_functions``,
    and ``to_tflite`` before it converted through a SavedModel) have no
    signature and name their outputs ``Identity``, ``Identity_1``, ...
    instead. Other files keep the interpreter's order.
    """
    signatures = {}
    full_list = getattr(interpreter, "_get_full_signature_list", None)
    if full_list is not None:
        try:
            signatures = full_list() or {}
        except (ValueError, RuntimeError):  # pragma: no cover - a file the interpreter cannot describe
            signatures = {}
    if len(signatures) == 1:
        outputs = next(iter(signatures.values())).get("outputs", {})
        numbers = {index: re.fullmatch(r"output_(\d+)", key) for key, index in outputs.items()}
        by_index = {d["index"]: d for d in details}
        if numbers and None not in numbers.values() and set(numbers) == set(by_index):
            return [by_index[i] for i in sorted(numbers, key=lambda i: int(numbers[i].group(1)))]
    keys = []
    for detail in details:
        match = re.fullmatch(r"Identity(?:_(\d+))?(?::0)?", detail["name"])
        if match is None:
            return list(details)
        keys.append(int(match.group(1) or 0))
    return [d for _, d in sorted(zip(keys, details), key=lambda kv: kv[0])]


def _quantize(x, detail):
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer) or scale == 0:
        return y
    return (y.astype(np.float32) - zero_point) * scale


def run_tflite(path, x, num_threads=None):
    """Runs a single-input TFLite file with the LiteRT interpreter.

    Batches larger than the file's batch size (1 for files written by
    ``to_tflite``) are run one sample at a time; dynamic dimensions are
    resized. Integer inputs/outputs (``int8_io=True`` files) are quantized
    and dequantized with the file's scales, so ``x`` and the results are float.

    Args:
        path: the ``.tflite`` file.
        x: input array, batch first (a single sample without the batch
            axis is run as a batch of one).
        num_threads: interpreter threads (default: the interpreter's).

    Returns:
        A list of output arrays (the model's flattened outputs, in order),
        each with ``x``'s batch size.

    Raises:
        ValueError: when the file does not have one input or ``x`` does not
            fit its shape.

    Example:
    >>> (probs,) = run_tflite("model.tflite", images)
    """
    interpreter = tflite_interpreter(path, num_threads=num_threads)
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise ValueError(
            f"run_tflite supports single-input files; '{path}' has {len(inputs)} inputs."
        )
    signature = tuple(int(d) for d in inputs[0]["shape_signature"])
    x = np.asarray(x)
    if x.ndim == len(signature) - 1:  # one sample without its batch axis
        x = x[None]
    if x.ndim != len(signature) or any(
        s not in (-1, d) for s, d in zip(signature[1:], x.shape[1:])
    ):
        raise ValueError(
            f"Input of shape {x.shape} does not fit the TFLite file's input {signature} "
            "(-1: dynamic)."
        )
    if signature[0] in (-1, x.shape[0]):
        batches = [x]
    elif signature[0] == 1:
        batches = [x[i : i + 1] for i in range(x.shape[0])]
    else:
        raise ValueError(
            f"Batch {x.shape[0]} does not fit the TFLite file's batch {signature[0]}."
        )
    interpreter.allocate_tensors()
    index = inputs[0]["index"]
    per_batch = []
    for batch in batches:
        if tuple(interpreter.get_input_details()[0]["shape"]) != tuple(batch.shape):
            interpreter.resize_tensor_input(index, list(batch.shape), strict=True)
            interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        if np.issubdtype(detail["dtype"], np.integer):
            batch = _quantize(batch, detail)
        else:
            batch = batch.astype(detail["dtype"])
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        outputs = _output_order(interpreter.get_output_details(), interpreter)
        per_batch.append([_dequantize(interpreter.get_tensor(d["index"]), d) for d in outputs])
    return [np.concatenate(parts, axis=0) for parts in zip(*per_batch)]


def to_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    input_shape=None,
    verify=True,
    num_samples=None,
    seed=0,
    int8_io=False,
    progress=None,
    depthwise_max_taps="auto",
    dense_group_channels=None,
    keep_failed=False,
    verification_data=None,
    verbose=False,
):
    """Converts a Keras model to a TFLite file and checks the file against Keras.

    The file has batch size 1 and fixed spatial dimensions: ``None``
    dimensions of the model input become those of ``input_shape`` or, when
    ``input_shape`` is not given, ``DEFAULT_SPATIAL_SIZE`` (224). It is then
    run with the LiteRT interpreter (``ai_edge_litert``) and compared with
    ``model(x, training=False)`` on ``verification_data`` when given, else on
    ``representative_data``, else on synthetic images in the model's own
    input range (0-255 pixels when the model scales its input itself; see
    ``keras_convzoo.export.inputs``). ``report.verification_inputs`` says
    which.

    Quantization (tolerances measured on trained models, see the docs'
    benchmarks page):

    - ``None``: float32; verified to ``relative_diff <= 1e-4``.
    - ``"float16"``: float16 weights (half the size), float32 compute on CPU;
      ``snr_db >= FLOAT16_MIN_SNR_DB``.
    - ``"dynamic"``: int8 weights, activations quantized on the fly;
      ``snr_db >= DYNAMIC_MIN_SNR_DB``.
    - ``"int8"``: full-integer ops only (``TFLITE_BUILTINS_INT8``) calibrated
      on ``representative_data``; float32 input and output unless
      ``int8_io=True``; ``snr_db >= INT8_MIN_SNR_DB``.
      On the user's own inputs (``verification_data`` or
      ``representative_data``, at least ``MIN_AGREEMENT_SAMPLES``) the
      quantized files must also agree with Keras' top-1 class on
      ``MIN_TOP1_AGREEMENT[quantization]`` of the samples. For a
      quantization-aware-trained model (``kcz.quantization.quantize_aware``)
      the ranges come from its fake-quant ops, ``representative_data`` is
      optional (it calibrates tensors without one) and the file is verified
      against the QAT model by ``snr_db >= 20`` (``QAT_INT8_MIN_SNR_DB``).
      Every int8 file is checked to be full-integer (``report.float_ops``
      empty).

    The tolerances are the constants of ``keras_convzoo.export.report``.

    Continuous-kernel layers (CCNN, CKConv, FlexConv) in their training
    form do not convert (kernel networks, FFT convolutions): the model is
    then fused first with ``prepare_for_export`` (kernels baked for the
    file's input size) and ``report.notes`` says so; the file is still
    checked against ``model`` itself.

    Args:
        model: a built single-input Keras 3 or tf_keras model.
        path: destination ``.tflite`` file; its folder must exist.
        quantization: ``None``, ``"float16"``, ``"dynamic"`` or ``"int8"``.
        representative_data: for ``"int8"`` only (optional for a QAT model):
            an iterable of input arrays, or a callable returning one (a
            generator function, a ``tf.data.Dataset``). Each item is one sample ``(H, W, C)``, a
            batch ``(N, H, W, C)``, ``[array]`` (TFLite's own format) or an
            ``(inputs, targets)`` pair; a single ``(N, H, W, C)`` array works
            too. Use preprocessed real images: random data calibrates poorly.
        input_shape: shape without batch, e.g. ``(64, 64, 3)``, fixing the
            model's ``None`` dimensions; known dimensions must agree.
        verify: run the file and raise when it is out of tolerance.
        num_samples: number of verification inputs, spread over
            ``verification_data`` / ``representative_data``. Default: every
            sample of ``verification_data``, else ``DEFAULT_NUM_SAMPLES``
            (8).
        seed: seed of the synthetic verification inputs.
        int8_io: ``"int8"`` only: make the file's input and output int8
            (for integer-only accelerators) instead of float32.
        progress: optional ``progress(done, total)`` called as the converter
            consumes each calibration sample (``"int8"`` with
            ``representative_data``), e.g. to draw a progress bar.
        depthwise_max_taps: depthwise convolutions with more taps than this
            are written as sums of depthwise convolutions of at most this
            many taps (XNNPACK's largest one-pass kernel is 25 taps, larger
            ones run much slower; see ``keras_convzoo.export.lowering``);
            None keeps them whole. ``"auto"`` (default):
            ``DEPTHWISE_MAX_TAPS`` (25), in float and int8 files alike. int8
            pays a few dB of SNR for the speed (each added piece
            re-quantizes); the file is verified either way (measurements on
            the documentation's benchmarks page).
        dense_group_channels: None (default: grouped convolutions stay
            grouped ``CONV_2D`` ops) or an int >= 1: ``"auto"``
            ``GroupConv2D`` layers with at most this many input channels per
            group are written as dense convolutions with a block-diagonal
            filter. Faster for full-integer files on x86 CPUs with int8 dot
            products (AVX-512 VNNI, AMX), slower in float32 (measurements on
            the documentation's benchmarks page). See
            ``keras_convzoo.export.lowering``.
        keep_failed: when verification fails, keep the rejected file as
            ``<name>.rejected<ext>`` beside ``path`` (default: delete it).
            The file is written beside ``path`` and renamed onto it only
            once verified: ``path`` is never left partial nor replaced by
            a rejected file.
        verification_data: inputs like the real ones to check the file on
            (same forms as ``representative_data``), e.g. a few hundred
            held-out images in the model's input range; or ``"synthetic"``:
            synthetic images in the model's range even when
            ``representative_data`` is given (calibration data that is not
            real, whose top-1 agreement would mean nothing).
        verbose: show the converter's own log lines (hidden by default).

    Returns:
        An ``ExportReport`` (differences ``None`` when ``verify=False``).

    Raises:
        ValueError: for an unknown ``quantization`` (the message lists the
            allowed values), ``"int8"`` without ``representative_data``,
            ``representative_data`` or ``int8_io`` without ``"int8"``, a
            ``path`` whose folder does not exist, a bad ``input_shape``,
            a bad ``depthwise_max_taps`` or ``dense_group_channels``, a
            multi-input model, or a model quantized by Keras'
            ``model.quantize`` (export the float model with ``"int8"``).
        TypeError: when ``model`` is not a Keras model (e.g. the path of a
            saved one).
        ExportError: (a ``RuntimeError``) when tracing or the TFLite converter
            fails (the message carries the converter's first error line), or
            when an int8 file would not be full-integer (the message names
            the float ops); no file is written then.
        VerificationError: (a ``ValueError``) when ``verify=True`` and the
            file is out of tolerance; the message has the measured numbers.
            Nothing is written at ``path`` then (see ``keep_failed``).

    Example:
    >>> model = kcz.ResNeXt50(weights=None, input_shape=(None, None, 3))
    >>> report = kcz.export.to_tflite(model, "resnext50.tflite", input_shape=(224, 224, 3))
    >>> report = kcz.export.to_tflite(
    ...     model, "resnext50_int8.tflite", quantization="int8",
    ...     representative_data=lambda: (img[None] for img in calibration_images),
    ...     input_shape=(224, 224, 3))
    >>> print(report)
    """
    quantization = _normalize_quantization(quantization)
    check_depthwise_max_taps(depthwise_max_taps, allow_auto=True)
    check_dense_group_channels(dense_group_channels)
    if not isinstance(keep_failed, bool):
        raise TypeError(f"`keep_failed` must be a bool. Received: keep_failed={keep_failed!r}")
    path = check_output_path(path, ".tflite")
    if quantization != "int8":
        if representative_data is not None:
            raise ValueError(
                "`representative_data` is used only with quantization='int8'. "
                f"Received: quantization={quantization!r}"
            )
        if int8_io:
            raise ValueError(
                f"`int8_io=True` needs quantization='int8'. Received: quantization={quantization!r}"
            )
    if verify and num_samples is not None:
        num_samples = check_num_samples(num_samples)
    model, precision_notes = float32_form(model)  # a mixed-precision model: its float32 form, checked as such
    quantized = keras_quantized_layers(model)
    if quantized:
        raise ValueError(
            f"`model` was quantized by Keras' `model.quantize` (layer `{quantized[0][0]}`: {quantized[0][1]}, "
            f"{len(quantized)} layer(s)), whose quantized ops the TFLite converter cannot convert: export the float "
            "model (before `quantize`) with quantization='int8' (full-integer, calibrated on `representative_data`) "
            "or 'dynamic' (int8 weights) instead."
        )
    model_shape, dtype, name = model_input(model)
    shape = concrete_input_shape(model_shape, input_shape, fill=True)
    full_shape = (1,) + shape
    start = time.perf_counter()
    if depthwise_max_taps == "auto":
        depthwise_max_taps = DEPTHWISE_MAX_TAPS
    traced, notes = prepare_for_export(model, shape)
    notes = precision_notes + notes
    release_memory()  # start from what is in use, not from an earlier export's peak
    with converter_logs(verbose):
        concrete = _serving_function(traced, full_shape, dtype, name, depthwise_max_taps, dense_group_channels)
    qat = is_quantization_aware(concrete)
    samples = None
    if quantization == "int8" and representative_data is None and not qat:
        raise ValueError(
            "quantization='int8' needs `representative_data`: an iterable (or a callable "
            f"returning one) of typical model inputs, e.g. a few hundred real images of shape {shape} "
            f"in the model's input range, {input_range(model).describe()}, used to calibrate activation ranges."
        )
    if quantization == "int8" and representative_data is not None:
        samples = data_samples(representative_data, shape, dtype.as_numpy_dtype, "representative_data")
    check_progress(progress)
    with converter_logs(verbose):
        content = _convert(traced, concrete, quantization, samples, bool(int8_io), progress, os.path.dirname(os.path.abspath(path)))
    found = None
    if quantization == "int8":
        found = float_ops(content)
        if found:
            hint = (
                " These tensors have no fake-quant range in the QAT model; pass "
                "`representative_data` to calibrate them."
                if samples is None
                else ""
            )
            raise ExportError(
                f"The int8 TFLite conversion of model '{getattr(model, 'name', '?')}' is not "
                f"full-integer: {', '.join(found)} compute in floating point.{hint} "
                "No file was written."
            )
    seconds = time.perf_counter() - start

    def write(target):
        with open(target, "wb") as f:
            f.write(content)

    fields = dict(
        format="tflite",
        path=path,
        quantization=quantization,
        file_size_bytes=len(content),
        input_shape=full_shape,
        tolerance=describe_tolerance("tflite", quantization, qat),
        quantization_aware=qat,
        float_ops=found,
        convert_seconds=seconds,
        notes=notes,
    )
    x = None
    if verify:
        x, fields["verification_inputs"], fields["real_inputs"] = verification_inputs(
            model, shape, dtype.as_numpy_dtype, verification_data, samples, num_samples, seed
        )
    try:
        return publish(fields, model, x, run_tflite, verify, write, keep_failed)
    except VerificationError as error:
        if quantization not in ("int8", "dynamic") or qat:
            raise
        raise VerificationError(f"{error} {_quantization_hint(model, quantization, samples)}") from None


def _quantization_hint(model, quantization, samples=None):
    """What to try when a quantized file is rejected."""
    range_hint = ""
    if samples:
        found = input_range(model)
        top = max(float(np.max(np.abs(sample))) for sample in samples)
        if found.kind == "pixels" and top <= 2.0:
            range_hint = (
                f" The representative_data span at most {top:.3g} in absolute value, but the model scales 0-255 "
                f"pixels itself ({found.source}): pass images in 0-255."
            )
    hint = (
        "Try representative_data of a few hundred real inputs, quantization='dynamic' (int8 weights, "
        "float activations) or 'float16'."
        if quantization == "int8"
        else "Try quantization='float16'."
    )
    hint = range_hint + " " + hint if range_hint else hint
    norms = [layer for layer in iter_layers(model) if type(layer).__name__ == "LayerNormalization"]
    if quantization == "int8" and norms:
        hint += (
            f" The model has {len(norms)} LayerNormalization layers: in full-integer files they lose the "
            "small per-position variations of inputs with a wide range (e.g. ConvNeXt's stem)."
        )
    return hint
