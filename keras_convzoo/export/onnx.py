"""Export to ONNX through tf2onnx, checked with ``onnx.checker`` and onnxruntime.

The model is traced in a ``tf.function`` whose input signature keeps the
batch dimension dynamic (``dynamic_batch=True``) and keeps the model's
``None`` spatial dimensions dynamic unless ``input_shape`` fixes them;
``tf2onnx.convert.from_function`` converts it. The result is validated with
``onnx.checker.check_model(full_check=True)`` before anything is written, the
file is written, then run with onnxruntime (CPU provider) on the user's
``verification_data`` or synthetic images in the model's own input range
(``keras_convzoo.export.inputs``) and compared with the Keras model.

tf2onnx quirk worked around here: an op tf2onnx cannot map (a ``PyFunc``, or
the nested ``(Stateful)PartitionedCall`` that the grouped ``Conv2D`` of Keras 3
and of tf_keras lowers to) is only *logged*; tf2onnx still returns a model that contains the
TensorFlow op, and Keras 3's own ``model.export(format="onnx")`` writes such
a file silently. Here the tf2onnx error log is captured and turned into an
``ExportError``, and the checker rejects any node outside the ONNX opsets, so
an invalid file is never written.

Memory (``keras_convzoo.export.memory``, ``docs/benchmarks/export-memory.md``):
``tf2onnx.convert.from_function`` took RepLKNet-31B (303 MB of weights) at
224x224 to 11.8 GiB. The steps here are tf2onnx's (freezing, its grappler
pass, ``process_tf_graph``, its optimizer, ``make_model``) with the weights
kept out of TensorFlow's copies: the function is frozen into a GraphDef
without building a frozen function, the large constants' bytes leave the
GraphDef for grappler (which sees placeholders of the same shape) and
tf2onnx reads them from a dict, tf2onnx's optimizer passes run in place
(``TF2ONNX_CATCH_ERRORS=FALSE``; repeated with tf2onnx's copying only when a
pass raises) and each node update gets a fresh ``NodeProto`` (with the upb
protobuf runtime tf2onnx's own update kept one more copy of the weights per
pass). The file has the same nodes and weights (some initializer names
differ) and gives the same outputs; RepLKNet-31B: 2.9 GiB.

Grouped convolutions are traced in their native form (one ONNX ``Conv`` with
``group``), see ``keras_convzoo.export.lowering``.
"""

import logging
import os
import time

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.export.lowering import deployment_lowering
from keras_convzoo.export.memory import (
    fresh_node_protos,
    frozen_graph_def,
    release_memory,
    restore_constants,
    split_constants,
)
from keras_convzoo.export.converter import converter_logs, first_error_line
from keras_convzoo.export.report import ExportError, describe_tolerance
from keras_convzoo.export.verification import check_output_path, publish
from keras_convzoo.input_shapes import merge_input_shape, model_input
from keras_convzoo.export.inputs import check_num_samples, verification_inputs
from keras_convzoo.export.prepare import float32_form, prepare_for_export

_HINTS = {
    "PartitionedCall": (
        "a nested TensorFlow function that was not inlined, e.g. keras.layers.Conv2D(groups>1), "
        "which Keras 3 and tf_keras both run as a nested XLA-compiled function; use "
        "keras_convzoo.layers.GroupConv2D instead"
    ),
    "PyFunc": "a tf.py_function / tf.numpy_function, which runs Python and cannot be exported",
}


def _import_onnx_stack():
    try:
        import onnx
        import onnxruntime
        import tf2onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ONNX export needs tf2onnx, onnx and onnxruntime: "
            "`pip install tf2onnx onnx onnxruntime` (or `pip install keras_convzoo[export]`)."
        ) from e
    _register_erfc_handler()
    return tf2onnx, onnx, onnxruntime


_ERFC_REGISTERED = []


def _register_erfc_handler():
    """Teaches tf2onnx ``Erfc`` as ``1 - Erf`` (ONNX has Erf since opset 9).

    ``tf.nn.gelu`` and ``keras.activations.gelu`` (exact form) are
    ``0.5 * x * erfc(-x / sqrt(2))`` in the TensorFlow graph; tf2onnx 1.17
    has no handler for ``Erfc``. The
    package's own GELU (``layers.gelu.gelu_exact``) is written with ``Erf``;
    the handler serves user layers such as ``keras.activations.gelu``.
    """
    if _ERFC_REGISTERED:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class _Erfc:  # noqa: F841 - registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, np_dtype)).output[0]
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name).output[0]
            node.type = "Sub"
            ctx.replace_inputs(node, [one, erf])

    _ERFC_REGISTERED.append(True)


class _ErrorLog(logging.Handler):
    """Collects the ERROR records tf2onnx logs while converting."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - malformed record
            self.messages.append(str(record.msg))


def _hint(text):
    for key, hint in _HINTS.items():
        if key in text:
            return f" ({key}: {hint})"
    return ""


def _is_conversion_failure(message):
    return (
        "is not supported" in message
        or message.startswith("Unsupported ops")
        or message.startswith("Failed to convert node")
    )


def _frozen_for_tf2onnx(tf2onnx, concrete, input_names, output_names):
    """``tf2onnx.tf_loader.from_function`` with the large constants kept out of TensorFlow (module doc).

    Returns ``(graph_def, values)``: the frozen, grappler-optimized GraphDef
    whose large constants have no data, and their data by node name.
    """
    graph_def = frozen_graph_def(concrete, aggressive_inlining=True)
    graph_def = tf2onnx.tf_loader.fix_freezing_errors_part2(graph_def)
    lean, values = split_constants(graph_def)
    del graph_def
    release_memory()
    with tf.Graph().as_default() as graph:  # as tf2onnx: a GraphDef with its output shapes, optimized in a graph
        tf.import_graph_def(lean, name="")
        lean = tf2onnx.tf_loader.tf_optimize(input_names, output_names, graph.as_graph_def(add_shapes=True))
    return restore_constants(lean, values), values


def _convert_frozen(tf2onnx, concrete, input_names, output_names, renames, opset, catch_errors):
    """Freezes ``concrete`` and converts it with tf2onnx (one try of ``_from_function``); the ``ModelProto``'s bytes."""
    with tf.device("/cpu:0"):
        graph_def, values = _frozen_for_tf2onnx(tf2onnx, concrete, input_names, output_names)
        with fresh_node_protos(), tf.Graph().as_default() as tf_graph:
            tf.import_graph_def(graph_def, name="")
            graph = tf2onnx.tfonnx.process_tf_graph(
                tf_graph, continue_on_error=True, opset=opset, input_names=input_names,
                output_names=output_names, const_node_values=values, tensors_to_rename=renames,
            )
            del values, graph_def
            release_memory()
            graph = tf2onnx.optimizer.optimize_graph(graph, catch_errors)
            proto = graph.make_model(f"converted from {concrete.name}")
    del graph
    release_memory()
    content = proto.SerializeToString()
    del proto
    return content


def _from_function(tf2onnx, serve, spec, opset):
    """``tf2onnx.convert.from_function``, holding about one copy of the weights at a time (module doc).

    The same steps as tf2onnx's (freezing with aggressive inlining, its
    grappler pass, ``process_tf_graph``, its optimizer, ``make_model``) with
    the large constants outside the GraphDef while TensorFlow handles it and
    a fresh ``NodeProto`` per node update. tf2onnx's optimizer passes run in
    place (``TF2ONNX_CATCH_ERRORS=FALSE`` for the duration of the call); the
    conversion is repeated with tf2onnx's copying (a failing pass skipped)
    only when that raises. A ``TF2ONNX_CATCH_ERRORS`` set by the user is left
    as it is (tf2onnx 1.17 compares the variable's *name* with ``"TRUE"``, so
    any value set turns the copying off and only its absence turns it on).

    Returns:
        The serialized ``ModelProto`` (bytes).
    """
    concrete = serve.get_concrete_function(spec)
    input_names = [t.name for t in concrete.inputs if t.dtype != tf.dtypes.resource]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tf2onnx.convert.tensor_names_from_structed(concrete, input_names, output_names)
    key = tf2onnx.constants.ENV_TF2ONNX_CATCH_ERRORS

    def convert(catch_errors):
        return _convert_frozen(tf2onnx, concrete, input_names, output_names, renames, opset, catch_errors)

    if key in os.environ:  # the user's choice; tf2onnx 1.17 reads any value as "do not copy" (docstring)
        return convert(catch_errors=False)
    os.environ[key] = "FALSE"
    try:
        return convert(catch_errors=False)
    except Exception:
        os.environ.pop(key, None)
        release_memory()
        return convert(catch_errors=True)
    finally:
        os.environ.pop(key, None)


def _convert(model, signature_shape, dtype, name, opset):
    tf2onnx, onnx, _ = _import_onnx_stack()
    spec = tf.TensorSpec(signature_shape, dtype, name=name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        outputs = tf.nest.flatten(model(x, training=False))
        return outputs[0] if len(outputs) == 1 else outputs

    model_name = getattr(model, "name", "?")
    log = _ErrorLog()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(log)
    try:
        with deployment_lowering(model):
            content = _from_function(tf2onnx, serve, spec, opset)
    except Exception as e:
        raise ExportError(
            f"ONNX conversion (tf2onnx {tf2onnx.__version__}, opset {opset}) of model "
            f"'{model_name}' failed: {first_error_line(e)}{_hint(str(e))}"
        ) from e
    finally:
        logger.removeHandler(log)
    failures = [m for m in log.messages if _is_conversion_failure(m)]
    if failures:
        first = first_error_line(failures[0])
        raise ExportError(
            f"ONNX conversion (tf2onnx {tf2onnx.__version__}, opset {opset}) of model "
            f"'{model_name}' failed: {first}{_hint(' '.join(failures))}"
        )
    try:
        onnx.checker.check_model(content, full_check=True)
    except Exception as e:
        logged = f" tf2onnx logged: {first_error_line(log.messages[0])}." if log.messages else ""
        raise ExportError(
            f"ONNX conversion (tf2onnx {tf2onnx.__version__}, opset {opset}) of model "
            f"'{model_name}' produced an invalid ONNX model (onnx.checker): "
            f"{first_error_line(e)}{_hint(str(e))}.{logged} No file was written."
        ) from e
    return content


def onnx_session(model, num_threads=None):
    """Opens an ONNX file (or its bytes) in an onnxruntime CPU session.

    The session ``run_onnx`` and the ``onnxruntime`` mode of
    ``keras_convzoo.profile.benchmark`` use: CPU execution provider, every
    graph optimisation onnxruntime offers, its warnings off.

    Args:
        model: path of an ``.onnx`` file, or the file's bytes.
        num_threads: intra-op threads (default: onnxruntime's, one per
            physical core).

    Returns:
        An ``onnxruntime.InferenceSession``.

    Raises:
        ValueError: when ``num_threads`` is not a positive int.

    Example:
    >>> session = onnx_session("model.onnx", num_threads=2)
    >>> (probs,) = session.run(None, {session.get_inputs()[0].name: images})
    """
    _, _, ort = _import_onnx_stack()
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise ValueError(f"`num_threads` must be a positive int or None. Received: num_threads={num_threads!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    source = model if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(path, x):
    """Runs a single-input ONNX file with onnxruntime on the CPU.

    Args:
        path: the ``.onnx`` file.
        x: input array, batch first. A file with a fixed batch of 1 is run one
            sample at a time; a single sample without the batch axis is run
            as a batch of one.

    Returns:
        A list of output arrays in the file's output order (the model's
        flattened outputs for files written by ``to_onnx``).

    Raises:
        ValueError: when the file does not have exactly one input or ``x``
            does not fit it.

    Example:
    >>> (probs,) = run_onnx("model.onnx", images)
    """
    session = onnx_session(path)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(
            f"run_onnx supports single-input files; '{path}' has {len(inputs)} inputs."
        )
    x = np.asarray(x, dtype=np.float32)
    shape = list(inputs[0].shape or [])
    if x.ndim == len(shape) - 1:  # one sample without its batch axis
        x = x[None]
    fits = x.ndim == len(shape) and all(not isinstance(d, int) or d == a for d, a in zip(shape[1:], x.shape[1:]))
    if not fits:
        signature = tuple(d if isinstance(d, int) else -1 for d in shape)
        raise ValueError(f"Input of shape {x.shape} does not fit the ONNX file's input {signature} (-1: dynamic).")
    batch = inputs[0].shape[0] if inputs[0].shape else None
    if batch == 1 and x.shape[0] != 1:
        batches = [x[i : i + 1] for i in range(x.shape[0])]
    else:
        batches = [x]
    per_batch = [session.run(None, {inputs[0].name: b}) for b in batches]
    return [np.concatenate(parts, axis=0) for parts in zip(*per_batch)]


def to_onnx(
    model,
    path,
    opset=17,
    dynamic_batch=True,
    verify=True,
    input_shape=None,
    num_samples=None,
    seed=0,
    keep_failed=False,
    verification_data=None,
    verbose=False,
):
    """Converts a Keras model to an ONNX file and checks the file against Keras.

    The file's input is named after the Keras input (e.g. ``"input"``) and
    has a dynamic batch dimension when ``dynamic_batch=True`` (batch 1
    otherwise). ``None`` spatial dimensions of the model stay dynamic in the
    file unless ``input_shape`` fixes them. The model is validated with
    ``onnx.checker`` (an invalid model raises and is never written), written,
    then run with onnxruntime (CPU) on ``verification_data`` or on
    ``num_samples`` synthetic images in the model's input range (one batch
    when the batch is dynamic, else one at a time), whose synthetic
    ``None`` dimensions are ``DEFAULT_SPATIAL_SIZE`` (224) unless
    ``input_shape`` is given, and compared with ``model(x, training=False)``
    to ``relative_diff <= 1e-4`` (``ONNX_MAX_RELATIVE_DIFF``).

    Continuous-kernel layers (CCNN, CKConv, FlexConv) in their training
    form do not convert (kernel networks, FFT convolutions): the model is
    then fused first with ``prepare_for_export`` (kernels baked for the
    file's input size) and ``report.notes`` says so; the file is still
    checked against ``model`` itself.

    Args:
        model: a built single-input Keras 3 or tf_keras model.
        path: destination ``.onnx`` file; its folder must exist.
        opset: ONNX opset for tf2onnx.
        dynamic_batch: keep the batch dimension dynamic.
        verify: run the file and raise when it is out of tolerance.
        input_shape: shape without batch, e.g. ``(64, 64, 3)``, fixing the
            model's ``None`` dimensions in the file and in verification.
        num_samples: number of verification inputs (default: every sample
            of ``verification_data``, else ``DEFAULT_NUM_SAMPLES``).
        seed: seed of the synthetic verification inputs.
        verification_data: inputs like the real ones to check the file on
            (an array of samples, an iterable of arrays or batches, a
            ``tf.data.Dataset``, or a callable returning one); default:
            synthetic images in the model's own input range
            (``keras_convzoo.export.inputs``).
        verbose: show tf2onnx's own log lines (hidden by default).
        keep_failed: when verification fails, keep the rejected file as
            ``<name>.rejected<ext>`` beside ``path`` (default: delete it).
            The file is written beside ``path`` and renamed onto it only
            once verified: ``path`` is never left partial nor replaced by
            a rejected file.

    Returns:
        An ``ExportReport`` with ``format="onnx"`` (differences ``None`` when
        ``verify=False``).

    Raises:
        ValueError: for a ``path`` whose folder does not exist, a bad
            ``input_shape`` or ``opset``, or a multi-input model.
        TypeError: when ``model`` is not a Keras model (e.g. the path of a
            saved one).
        ExportError: (a ``RuntimeError``) when tf2onnx cannot convert an op
            or produces a model ``onnx.checker`` rejects; the message names
            tf2onnx and carries its first error line.
        VerificationError: (a ``ValueError``) when ``verify=True`` and the
            file is out of tolerance; the message has the measured numbers.
            Nothing is written at ``path`` then (see ``keep_failed``).

    Example:
    >>> model = kcz.ResNeXt50(weights=None, input_shape=(None, None, 3))
    >>> report = kcz.export.to_onnx(model, "resnext50.onnx")  # dynamic N, H, W
    >>> report.relative_diff < 1e-4
    True
    """
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or opset < 7:
        raise ValueError(f"`opset` must be an int >= 7. Received: opset={opset!r}")
    if not isinstance(keep_failed, bool):
        raise TypeError(f"`keep_failed` must be a bool. Received: keep_failed={keep_failed!r}")
    path = check_output_path(path, ".onnx")
    if verify and num_samples is not None:
        num_samples = check_num_samples(num_samples)
    model, precision_notes = float32_form(model)  # a mixed-precision model: its float32 form, checked as such
    model_shape, dtype, name = model_input(model)
    shape = merge_input_shape(model_shape, input_shape)
    signature_shape = (None if dynamic_batch else 1,) + shape
    start = time.perf_counter()
    traced, notes = prepare_for_export(model, shape if None not in shape else None, argument="input_shape")
    notes = precision_notes + notes
    release_memory()  # start from what is in use, not from an earlier export's peak
    with converter_logs(verbose):
        content = [_convert(traced, signature_shape, dtype, name, int(opset))]
    seconds = time.perf_counter() - start

    def write(target):
        with open(target, "wb") as f:
            f.write(content.pop())  # the file's bytes are not kept while it is verified
        release_memory()

    fields = dict(
        format="onnx",
        path=path,
        quantization=None,
        file_size_bytes=None,
        input_shape=signature_shape,
        tolerance=describe_tolerance("onnx"),
        convert_seconds=seconds,
        notes=notes,
    )
    x = None
    if verify:
        x, fields["verification_inputs"], fields["real_inputs"] = verification_inputs(
            model, shape, dtype.as_numpy_dtype, verification_data, None, num_samples, seed
        )
    return publish(fields, model, x, run_onnx, verify, write, keep_failed)
