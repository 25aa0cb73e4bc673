"""Keeping a conversion's memory close to the size of the model: lean freezing, weights kept out of TensorFlow's copies.

A full-size export used to peak at many times the size of its weights
(RepLKNet-31B, 303 MB of float32 weights, at 224x224: 6.6 GiB for fp32 TFLite,
11.8 GiB for ONNX; ``tools/export_memory.py``, ``docs/benchmarks/export-memory.md``).
What held the memory, and what the exporters do instead:

- The TFLite converter and tf2onnx freeze the traced function with
  ``convert_variables_to_constants_v2``, which builds a GraphDef with every
  weight as a constant *and then imports it back as a new function*,
  registered in the eager context for the life of the process: 3 GB more at
  its peak, 2.3 GB of it kept (RepLKNet-31B). ``frozen_graph_def`` builds
  only the GraphDef (no function, nothing registered); ONNX export uses it.
- The TFLite converter copies a frozen GraphDef's constants about seven
  times (the Python GraphDef, its serialized string, the C++ string and
  GraphDef, the TensorFlow graph, MLIR attributes): +2.4 GB in C++ for
  RepLKNet-31B. ``export.tflite`` hands it a SavedModel instead, whose
  variables the converter restores itself.
- tf2onnx runs TensorFlow's grappler on, and imports, a GraphDef holding
  every weight (copies in Python, C++ and the session). ``split_constants``
  takes the large constants' bytes out first (grappler sees placeholders of
  the same shape, so it folds nothing into them) and tf2onnx reads them from
  a dict (its own ``const_node_values``, as for its "large models").
- tf2onnx rewrites every node's ``NodeProto`` after each optimizer pass
  (``Node.update_proto``: ``del attribute[:]``, then ``extend``). Under the
  upb protobuf runtime the removed attributes, weights included, stay in the
  node's arena until the node dies, so each pass kept one more copy of the
  weights (RepLKNet-31B: 4.7 -> 9.9 GiB over the optimizer's passes).
  ``fresh_node_protos`` gives each update a new ``NodeProto``.

- TensorFlow's int8 conversion (one ``convert()`` call) still holds the float
  flatbuffer and its calibrated copy in its stack frames while the calibrator
  packs the calibrated model: 4.07 GiB for RepLKNet-31B. ``calibrate_in_stages``
  runs TensorFlow's steps one after the other and drops each stage's input,
  and hands the calibrator the float model with its weights after the graph,
  so that it packs only the graph (3.16 GiB; the same file, byte for byte).
- The converter's last steps unpack the flatbuffer into a Python object and
  pack it again with a builder that starts at 1 KiB and doubles, then copy the
  result twice (+1.1 GiB over RepLKNet-31B's fp32 model, twice).
  ``lean_model_packing`` has them use ``pack_tflite_model``: one buffer of
  the model's size, one copy (fp32 TFLite 3.70 -> 2.93 GiB).

``release_memory`` hands memory freed by a finished stage back to the
system (``malloc_trim`` where glibc has it), so that the next stage starts
from what is still in use rather than from the previous stage's peak.
"""

import contextlib
import copy
import ctypes
import gc

#: Constants of more bytes leave the GraphDef while TensorFlow optimizes it for tf2onnx (tf2onnx's own
#: ``compress_graph_def`` uses the same bound).
LARGE_CONSTANT_BYTES = 1000


def release_memory():
    """Collects garbage and returns freed heap memory to the system where the C library can (glibc's ``malloc_trim``)."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl, Windows)
        return
    trim(0)


def frozen_graph_def(concrete, aggressive_inlining=False):
    """The GraphDef of ``concrete`` with its variables as constants, without building a frozen function.

    ``convert_variables_to_constants_v2`` (public) builds this GraphDef and
    then imports it back as a new concrete function registered in the eager
    context, which keeps a copy of every weight for the life of the process;
    the converters here only need the GraphDef. Uses TensorFlow's own freezing
    code (``_FunctionConverterDataInEager`` and ``_replace_variables_by_constants``,
    as tf2onnx does for large models), falling back to the public function
    where they are missing.

    Args:
        concrete: a ``tf.function`` concrete function.
        aggressive_inlining: inline functions with stateful ops too (tf2onnx
            freezes this way; the TFLite converter does not).

    Returns:
        A ``GraphDef``.
    """
    from tensorflow.python.framework import convert_to_constants

    converter_data = getattr(convert_to_constants, "_FunctionConverterDataInEager", None)
    replace = getattr(convert_to_constants, "_replace_variables_by_constants", None)
    if converter_data is None or replace is None:  # pragma: no cover - other TensorFlow versions
        _, graph_def = convert_to_constants.convert_variables_to_constants_v2_as_graph(
            concrete, lower_control_flow=False, aggressive_inlining=aggressive_inlining
        )
        return graph_def
    data = converter_data(func=concrete, lower_control_flow=False, aggressive_inlining=aggressive_inlining)
    graph_def, _ = replace(converter_data=data)
    return graph_def


def split_constants(graph_def, min_bytes=LARGE_CONSTANT_BYTES):
    """Takes the data of large constants out of a GraphDef.

    Each ``Const`` node whose ``tensor_content`` has more than ``min_bytes``
    bytes becomes a ``PlaceholderWithDefault`` of the same dtype and shape
    whose default is a zero written once (grappler neither copies its data
    nor folds anything into it, and, unlike a ``Placeholder``, does not feed
    it a made-up tensor nor forget its static shape);
    ``restore_constants`` turns them back into ``Const`` nodes without data,
    whose values tf2onnx reads from the returned dict. A constant whose
    elements are all equal (e.g. a zero bias) stays a ``Const``, written as
    its one value (TensorFlow repeats the last value of a ``TensorProto``),
    so that grappler folds it as before (``x + 0`` disappears).

    Args:
        graph_def: a frozen ``GraphDef`` (not changed; drop it afterwards to
            free its memory).
        min_bytes: constants of more bytes are taken out.

    Returns:
        ``(lean_graph_def, values)``: values maps node names to the bytes of
        their ``tensor_content``.
    """
    values = {}
    lean = type(graph_def)()
    lean.versions.CopyFrom(graph_def.versions)
    lean.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" and "value" in node.attr else None
        content = tensor.tensor_content if tensor is not None else b""  # (a copy: read once)
        if len(content) <= min_bytes:
            lean.node.add().CopyFrom(node)
            continue
        uniform = _uniform_value(tensor, content)
        if uniform is not None:
            const = lean.node.add()
            _copy_fields(node, const, skip=("attr",))
            for key in node.attr:
                if key != "value":
                    const.attr[key].CopyFrom(node.attr[key])
            const.attr["value"].tensor.CopyFrom(uniform)
            continue
        values[node.name] = content
        default = lean.node.add()  # a zero of the constant's shape, one value in the GraphDef
        default.name = node.name + _DEFAULT_SUFFIX
        default.op = "Const"
        default.device = node.device
        default.attr["dtype"].type = tensor.dtype
        default.attr["value"].tensor.CopyFrom(_compact(tensor, 0))
        placeholder = lean.node.add()
        placeholder.name = node.name
        placeholder.op = "PlaceholderWithDefault"
        placeholder.device = node.device
        placeholder.input.append(default.name)
        placeholder.attr["dtype"].type = tensor.dtype
        placeholder.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
    return lean, values


#: Name suffix of the default value ``split_constants`` gives each of its placeholders.
_DEFAULT_SUFFIX = "/keras_convzoo_split_default"


def _compact(tensor, value):
    """A ``TensorProto`` of ``tensor``'s dtype and shape whose elements are all ``value``, holding it once."""
    from keras_convzoo.backend import tf

    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    return tf.make_tensor_proto(value, dtype=tf.dtypes.as_dtype(tensor.dtype), shape=shape)


def _uniform_value(tensor, content):
    """A compact ``TensorProto`` (one value, the full shape) of a tensor whose elements are all equal, else None."""
    import numpy as np

    from keras_convzoo.backend import tf

    dtype = tf.dtypes.as_dtype(tensor.dtype)
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool) or dtype.is_quantized:
        return None
    flat = np.frombuffer(content, dtype=dtype.as_numpy_dtype)
    bits = flat.view(f"u{flat.itemsize}") if flat.itemsize in (1, 2, 4, 8) else None
    if flat.size == 0 or bits is None or not np.all(bits == bits[0]):  # bitwise: -0.0 and 0.0 differ
        return None
    compact = _compact(tensor, flat[0])
    return compact if not compact.tensor_content else None


def _copy_fields(source, target, skip=()):
    """Copies the set fields of protobuf message ``source`` into ``target``, except the fields named in ``skip``."""
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        destination = getattr(target, field.name)
        if hasattr(destination, "extend"):  # a repeated field
            destination.extend(value)
        elif hasattr(destination, "CopyFrom"):  # a message
            destination.CopyFrom(value)
        else:
            setattr(target, field.name, value)


def restore_constants(graph_def, values):
    """Turns the placeholders ``split_constants`` made back into ``Const`` nodes without data.

    Their zero defaults are left out (unless something else uses them).

    Args:
        graph_def: a ``GraphDef`` from ``split_constants`` (after optimization;
            changed in place).
        values: the dict ``split_constants`` returned.

    Returns:
        A new ``GraphDef``.

    Raises:
        RuntimeError: when an optimizer replaced one of the placeholders
            (its value would be lost).
    """
    changed = sorted(node.name for node in graph_def.node
                     if node.name in values and node.op != "PlaceholderWithDefault")
    if changed:
        raise RuntimeError(f"The graph optimizer replaced the weight placeholders {changed[:3]}; their values "
                           "cannot be restored.")
    defaults = set()
    for node in graph_def.node:
        if node.op != "PlaceholderWithDefault" or node.name not in values:
            continue
        defaults.update(name.lstrip("^").split(":")[0] for name in node.input)
        tensor = node.attr["value"].tensor
        tensor.dtype = node.attr["dtype"].type
        tensor.tensor_shape.CopyFrom(node.attr["shape"].shape)
        del node.attr["shape"]
        del node.input[:]
        node.op = "Const"
    used = {name.lstrip("^").split(":")[0] for node in graph_def.node for name in node.input}
    unused = defaults - used  # a default grappler merged with another constant stays
    restored = type(graph_def)()
    _copy_fields(graph_def, restored, skip=("node",))
    restored.node.extend(node for node in graph_def.node if node.name not in unused)
    return restored


@contextlib.contextmanager
def fresh_node_protos():
    """Inside the context, tf2onnx's ``Node.update_proto`` writes into a new ``NodeProto`` each time (module doc).

    Same node, same fields; the old proto (and, under the upb protobuf
    runtime, the attributes removed from it) is freed with it.
    """
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        fresh = type(old)()
        _copy_fields(old, fresh, skip=("input", "output", "attribute"))  # those three are tf2onnx's to write
        self._op = fresh
        return original(self, external_tensor_storage)

    Node.update_proto = update_proto
    try:
        yield
    finally:
        Node.update_proto = original


def calibrate_in_stages(converter):
    """``converter.convert()`` for a post-training int8 conversion, each stage's input freed before the next starts.

    The TFLite converter's one call keeps every stage's model alive until it
    returns: its stack frames still hold the float flatbuffer and the copy it
    calibrates while the calibrator writes the calibrated model (unpacked and
    packed again with a flatbuffer builder: +1.5 GiB for RepLKNet-31B at
    224x224, whose weights are 303 MB), and the calibrator lives on while the
    quantizer runs. Here the same TensorFlow steps run one after the other, in
    TensorFlow's own order and with its own arguments, each dropping what the
    next no longer needs: the float conversion (TensorFlow's
    ``_optimize_tflite_model`` held back, no metadata yet), the calibration
    of that model (``Calibrator.calibrate``), then TensorFlow's
    ``_optimize_tflite_model`` on the calibrated model with its quantize step
    reduced to the MLIR quantizer call it would make, then the conversion
    metadata, written as ``convert()`` writes it. The float model is written
    with its weights after the flatbuffer (TensorFlow's own buffer-offset
    form), so the calibrator, which unpacks and packs the whole model to
    write its statistics, packs only the graph and copies the weights once;
    the quantizer reads that form and writes the usual one, less the
    ``buffer_location`` entry it carries over (``_drop_buffer_location``).
    The file is the one ``convert()`` writes, byte for byte (tested for every
    family, and for a QAT model with calibration data); only the peak memory
    differs (the documentation's export-memory page).

    Conversions this does not cover (the old quantizer, 16-bit activations,
    calibration only, the StableHLO quantizer, no representative dataset) and
    TensorFlow versions without these internals take ``converter.convert()``.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` (V2) set up for full-integer
            post-training quantization with a ``representative_dataset``.

    Returns:
        The flatbuffer (``bytes``), as ``converter.convert()`` returns it.
    """
    from keras_convzoo.backend import tf

    staged = _staged_steps(converter)
    if staged is None:
        return converter.convert()
    calibrator_class, add_intermediates, dataset_class, mlir_quantize, optimize = staged
    captured = {}

    def hold_float(model, quant_mode, debug_options, quant_io=True):
        captured.update(quant_mode=quant_mode, debug_options=debug_options, quant_io=quant_io)
        return model

    exclude_metadata = converter.exclude_conversion_metadata
    offset_before = converter._experimental_use_buffer_offset  # weights after the flatbuffer: this conversion only
    converter._optimize_tflite_model = hold_float
    converter.exclude_conversion_metadata = True
    converter._experimental_use_buffer_offset = True
    try:
        model = converter.convert()
    finally:
        del converter._optimize_tflite_model
        converter.exclude_conversion_metadata = exclude_metadata
        converter._experimental_use_buffer_offset = offset_before
    # `_convert_and_export_metrics` below first recomputes the metadata's options without the graph (a QAT graph's
    # mode would be lost); the ones the float conversion computed from the graph are put back.
    options = copy.deepcopy(converter._metadata.options)
    quant_mode, debug_options, quant_io = captured["quant_mode"], captured["debug_options"], captured["quant_io"]

    def finish(model):
        def optimize_model(self):
            self._metadata.options = copy.deepcopy(options)
            return optimize(self, model, quant_mode, debug_options, quant_io)

        return converter._convert_and_export_metrics(optimize_model)

    if not quant_mode.is_post_training_integer_quantization() or quant_mode.activations_type() != tf.int8:
        # Not a case this covers after all (TensorFlow's own mode says so): TensorFlow's own call, from the start (the
        # float model above is in the buffer-offset form, which convert()'s last steps would leave as it is).
        del model
        return converter.convert()
    release_memory()
    registerers = converter.target_spec._experimental_custom_op_registerers
    by_name = [r for r in registerers if isinstance(r, str)]
    by_func = [r for r in registerers if not isinstance(r, str)]
    model = add_intermediates(model)  # the float model is dropped here, its copy kept
    calibrator = calibrator_class(model, by_name, by_func)
    del model
    dataset = converter.representative_dataset
    if not isinstance(dataset, dataset_class):
        dataset = dataset_class(dataset)
    calibrated = calibrator.calibrate(dataset.input_gen)
    del calibrator
    release_memory()

    def quantize_calibrated(model, input_type, output_type, activations_type, bias_type, allow_float,
                            enable_variable_quantization, debug_options):
        # TensorFlow's `_quantize` on this path: calibrate `model` (done above), then this call.
        quantized = mlir_quantize(
            model,
            converter._experimental_disable_per_channel,
            input_data_type=input_type,
            output_data_type=output_type,
            enable_variable_quantization=enable_variable_quantization,
            disable_per_channel_for_dense_layers=(
                converter._experimental_disable_per_channel_quantization_for_dense_layers),
            debug_options_str=debug_options.SerializeToString(),
        )
        return quantized if offset_before else _drop_buffer_location(quantized)

    converter._quantize = quantize_calibrated
    try:
        return finish(calibrated)
    finally:
        del converter._quantize


#: The metadata entry that marks a flatbuffer whose weights follow it (TensorFlow's buffer-offset form).
_BUFFER_LOCATION = b"buffer_location"


def _drop_buffer_location(model):
    """``model`` (a flatbuffer with every weight inside it) without its stale ``buffer_location`` entry and buffer.

    The MLIR quantizer reads a model in the buffer-offset form and writes the
    usual form, but carries the entry over (with its buffer, the text
    "outside flatbuffers"); TensorFlow's post-processing would then take the
    file for an offset one and skip the buffer deduplication and conversion
    metadata ``convert()`` writes. Removing the entry and its buffer gives the
    model ``convert()``'s quantizer returns.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    entries = [entry for entry in (tree.metadata or []) if entry.name == _BUFFER_LOCATION]
    if not entries:
        return model
    if len(entries) > 1 or any(buffer.offset > 1 for buffer in tree.buffers):
        raise RuntimeError("the quantized model still keeps weights outside its flatbuffer")
    gone = entries[0].buffer
    tree.metadata = [entry for entry in tree.metadata if entry is not entries[0]]
    tensors = [tensor for subgraph in tree.subgraphs for tensor in subgraph.tensors]
    if any(item.buffer == gone for item in tensors + tree.metadata) or gone in list(tree.metadataBuffer or []):
        raise RuntimeError("the quantized model's buffer_location buffer is in use")
    del tree.buffers[gone]
    for item in tensors + tree.metadata:
        item.buffer -= item.buffer > gone
    if tree.metadataBuffer is not None:
        tree.metadataBuffer = [index - (index > gone) for index in tree.metadataBuffer]
    return pack_tflite_model(tree)


#: The TFLite flatbuffer's file identifier.
_TFLITE_IDENTIFIER = b"TFL3"


def pack_tflite_model(model_object, extra_buffer=b""):
    """A TFLite model object (``schema_py_generated.ModelT``) as flatbuffer bytes, in one buffer and one copy.

    TensorFlow's ``flatbuffer_utils.convert_object_to_bytearray``, which its
    converter calls twice at the end of every conversion (buffer
    deduplication, conversion metadata), starts the flatbuffer builder at
    1 KiB, so the builder doubles its buffer up to the model's size (the old
    and the new buffer both alive at each step), then copies the result
    twice: +1.1 GiB over the model for RepLKNet-31B's 303 MB of weights, the
    peak of its fp32 export. Here the builder starts at the model's size
    (its weights plus room for the graph) and the result is copied out once.
    A builder writes the same bytes whatever its starting size, so the
    output is the one TensorFlow's function returns (tested).

    Args:
        model_object: the model object to pack.
        extra_buffer: bytes appended after the flatbuffer (as TensorFlow's
            function does, for models whose weights follow it).

    Returns:
        The flatbuffer, as ``bytes``.

    Example:

    ```python
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    tree = schema.ModelT.InitFromPackedBuf(open("model.tflite", "rb").read(), 0)
    assert pack_tflite_model(tree) == flatbuffer_utils.convert_object_to_bytearray(tree)
    ```
    """
    import flatbuffers

    weights = sum(len(buffer.data) for buffer in (model_object.buffers or []) if buffer.data is not None)
    entries = sum(len(subgraph.tensors or []) + len(subgraph.operators or []) for subgraph in model_object.subgraphs or [])
    size = min(weights + 512 * entries + (1 << 20), flatbuffers.Builder.MAX_BUFFER_SIZE)
    builder = flatbuffers.Builder(size)
    builder.Finish(model_object.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    with memoryview(builder.Bytes) as whole:
        packed = bytes(whole[builder.Head():])
    del builder
    return packed + extra_buffer if extra_buffer else packed


@contextlib.contextmanager
def lean_model_packing():
    """Within this block TensorFlow's converter packs its model objects with ``pack_tflite_model``.

    Replaces ``tensorflow.lite.tools.flatbuffer_utils.convert_object_to_bytearray``
    (the function the converter's last steps call) while the block runs;
    where TensorFlow lacks it, does nothing. A block opened inside another
    (or in another thread meanwhile) leaves the replacement to the outer one,
    so TensorFlow's function is always put back.

    Example:

    ```python
    with lean_model_packing():
        content = converter.convert()
    ```
    """
    try:
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError:  # pragma: no cover - other TensorFlow versions
        yield
        return
    original = getattr(flatbuffer_utils, "convert_object_to_bytearray", None)
    if original is None or original is pack_tflite_model:  # other TensorFlow versions; a block already open
        yield
        return
    flatbuffer_utils.convert_object_to_bytearray = pack_tflite_model
    try:
        yield
    finally:
        flatbuffer_utils.convert_object_to_bytearray = original


def _staged_steps(converter):
    """TensorFlow's pieces ``calibrate_in_stages`` runs, or None where this converter or version lacks them."""
    try:
        from tensorflow.lite.python import lite as tf_lite
        from tensorflow.lite.python.optimize import calibrator as tf_calibrator

        steps = (tf_calibrator.Calibrator, tf_calibrator.add_intermediate_tensors, tf_lite.RepresentativeDataset,
                 tf_lite._mlir_quantize, type(converter)._optimize_tflite_model)
    except (ImportError, AttributeError):  # pragma: no cover - other TensorFlow versions
        return None
    used = ("_quantize", "_convert_and_export_metrics", "_metadata", "_experimental_disable_per_channel",
            "_experimental_disable_per_channel_quantization_for_dense_layers", "exclude_conversion_metadata",
            "_experimental_use_buffer_offset")
    if not all(hasattr(converter, name) for name in used) or not hasattr(
            converter.target_spec, "_experimental_custom_op_registerers"):  # pragma: no cover - other versions
        return None
    if (converter.representative_dataset is None or not converter.experimental_new_quantizer
            or getattr(converter, "experimental_use_stablehlo_quantizer", False)
            or getattr(converter, "_experimental_calibrate_only", False)):
        return None
    return steps
