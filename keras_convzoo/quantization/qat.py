"""Quantization-aware training (QAT) of keras_convzoo models with tensorflow-model-optimization."""

import numpy as np

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.export.report import QAT_INT8_MIN_SNR_DB as _QAT_INT8_MIN_SNR_DB

#: Smallest output SNR (dB) of a QAT model's full-integer TFLite file against
#: the QAT model (``to_tflite(qat_model, path, quantization="int8")`` checks
#: it); ``keras_convzoo.export.report`` explains the bound.
QAT_INT8_MIN_SNR_DB = _QAT_INT8_MIN_SNR_DB

_LEGACY_HINT = (
    "keras_convzoo.quantization (quantize_aware) needs tf_keras: tensorflow-model-optimization only accepts tf_keras "
    "(Keras 2) models, and keras_convzoo runs on Keras 3 in this process. Run the script "
    "under tf_keras, which is one environment variable away and gives the same models, "
    "weights and export API: `TF_USE_LEGACY_KERAS=1 python your_script.py` (set it before "
    "TensorFlow is imported)."
)


def _require_legacy_keras():
    if not LEGACY_KERAS:
        raise RuntimeError(_LEGACY_HINT)


def _import_tfmot():
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Quantization-aware training needs tensorflow-model-optimization: "
            "`pip install tensorflow-model-optimization` (or `pip install keras_convzoo[qat]`)."
        ) from e
    return tfmot


def quantize_scope():
    """Context manager under which QAT models of keras_convzoo can be cloned and loaded.

    Wraps ``tfmot.quantization.keras.quantize_scope`` with the package's
    layers and QuantizeConfigs. Needs tf_keras (``TF_USE_LEGACY_KERAS=1``).

    Returns:
        A context manager.

    Raises:
        RuntimeError: under Keras 3, with the one-command way to run under tf_keras.

    Example:
    >>> with kcz.quantization.quantize_scope():
    ...     qat_model = tf_keras.models.load_model("qat_model.h5")
    """
    _require_legacy_keras()
    tfmot = _import_tfmot()
    from keras_convzoo.quantization import configs

    return tfmot.quantization.keras.quantize_scope(configs.custom_objects())


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a tf_keras functional or Sequential model. "
            f"Received: model of type {type(model).__name__}"
        )
    is_graph = isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)
    if not is_graph:
        raise TypeError(
            "`model` must be a functional or Sequential model (tfmot cannot quantize "
            f"subclassed models). Received: {type(model).__name__} '{model.name}'"
        )
    if not model.built:
        raise ValueError(f"`model` '{model.name}' must be built before quantize_aware.")


def unsupported_layers(model):
    """Layers of ``model`` that ``quantize_aware`` has no QuantizeConfig for.

    Args:
        model: a tf_keras functional or Sequential model.

    Returns:
        A list of ``(layer name, class name, reason)``; empty when every layer
        is supported. Nested models are reported (tfmot quantizes flat graphs
        only), as are ``Activation`` layers whose function tfmot cannot
        quantize.

    Raises:
        RuntimeError: under Keras 3 (see ``quantize_aware``).
    """
    _require_legacy_keras()
    _import_tfmot()
    from keras_convzoo.quantization import configs

    registry = configs.ZooQuantizeRegistry()
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = type(layer).__name__
        if isinstance(layer, keras.Model):
            found.append((layer.name, name, "nested model: flatten it into the functional graph"))
        elif not registry.supports(layer):
            found.append((layer.name, name, "no QuantizeConfig (tfmot default registry or keras_convzoo)"))
        else:
            try:
                registry.get_quantize_config(layer).get_output_quantizers(layer)
            except (ValueError, RuntimeError) as e:
                found.append((layer.name, name, str(e).splitlines()[0]))
    return found


def _calibration_batches(data):
    """Yields float32 input batches from ``calibration_data`` (see ``quantize_aware``)."""
    source = data() if callable(data) else data
    if isinstance(source, np.ndarray) or tf.is_tensor(source):
        source = [np.asarray(source)]
    try:
        iterator = iter(source)
    except TypeError:
        raise TypeError(
            "`calibration_data` must be an array of input samples (N, ...), an iterable of "
            "batches (arrays or (inputs, targets) pairs, e.g. a tf.data.Dataset) or a "
            f"callable returning one. Received: {type(source).__name__}"
        ) from None
    for item in iterator:
        if isinstance(item, (list, tuple)):
            item = item[0]
        yield np.asarray(item, dtype="float32")


def _check_calibration_data(data):
    """Rejects what cannot be calibration data before any (slow) wrapping."""
    if data is None or callable(data) or isinstance(data, np.ndarray) or tf.is_tensor(data):
        return
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "`calibration_data` must be an array of input samples (N, ...), an iterable of "
            "batches (arrays or (inputs, targets) pairs, e.g. a tf.data.Dataset) or a "
            f"callable returning one. Received: calibration_data of type {type(data).__name__}"
        )


def _range_targets(qat_model):
    """Every activation range of a QAT model and the tensor of the float model it covers.

    Returns:
        A list of ``(kind, layer_name, min_var, max_var)``; ``kind`` is
        ``"input"`` (the QuantizeLayer after a model input; ``layer_name`` is
        the input's position), ``"output"`` (a layer's output, also the
        post-activation range of a fused activation) or ``"pre_activation"``
        (the input of a softmax/sigmoid/tanh/gelu activation of a layer).
    """
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_layer,
        quantize_wrapper,
    )

    input_names = [t.name for t in qat_model.inputs]
    targets = []
    for layer in qat_model.layers:
        if isinstance(layer, quantize_layer.QuantizeLayer):
            qvars = getattr(layer, "quantizer_vars", None) or {}
            if "min_var" in qvars:
                source = keras.utils.get_source_inputs(layer.input)
                names = [t.name for t in source]
                if len(names) != 1 or names[0] not in input_names:
                    raise ValueError(
                        f"calibrate_ranges: cannot tell which model input QuantizeLayer "
                        f"'{layer.name}' quantizes (sources: {names})."
                    )
                position = input_names.index(names[0])
                targets.append(("input", position, qvars["min_var"], qvars["max_var"]))
        elif isinstance(layer, quantize_wrapper.QuantizeWrapper):
            name = layer.layer.name
            output_vars = getattr(layer, "_output_quantizer_vars", None)
            if getattr(layer, "_output_quantizers", None) and output_vars:
                targets.append(("output", name, output_vars["min_var"], output_vars["max_var"]))
            for activation in getattr(layer, "_quantize_activations", []):
                post = getattr(activation, "_post_activation_vars", None)
                pre = getattr(activation, "_pre_activation_vars", None)
                if post is not None and activation._should_post_quantize():
                    targets.append(("output", name, post["min_var"], post["max_var"]))
                if pre is not None and activation._should_pre_quantize():
                    targets.append(("pre_activation", name, pre["min_var"], pre["max_var"]))
    return targets


def _pre_activation(layer, x):
    """``layer``'s output before its ``activation`` (eager; the layer is restored)."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(x, training=False)
    finally:
        layer.activation = activation


def calibrate_ranges(qat_model, float_model, calibration_data):
    """Sets the int8 ranges of a QAT model from data instead of tfmot's initial [-6, 6].

    tfmot starts every activation range at [-6, 6] and moves it by an
    exponential moving average with decay 0.999, so a short fine-tune leaves
    most ranges far wider than the activations (coarse int8 steps). This sets
    each weight range from the weights (as a training step would) and each
    activation range to the min/max (widened to contain 0) of the matching
    tensor of ``float_model`` over ``calibration_data``; training then
    refines them.

    Args:
        qat_model: a model from ``quantize_aware``.
        float_model: the model it was made from (same layer names).
        calibration_data: inputs, as for ``quantize_aware``.

    Returns:
        The number of activation ranges set.

    Raises:
        ValueError: when a range's layer is not in ``float_model``, or when
            ``calibration_data`` yields no batch.

    Example:
    >>> calibrate_ranges(qat, model, images[:256])
    """
    for layer in qat_model.layers:
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", []):
            quantizer(tf.convert_to_tensor(weight), True, weights=qvars)
    targets = _range_targets(qat_model)
    missing = sorted({n for kind, n, _, _ in targets if kind != "input" and not _has_layer(float_model, n)})
    if missing:
        raise ValueError(
            f"calibrate_ranges: layers {missing} of the QAT model are not in `float_model` "
            f"'{float_model.name}'; pass the model quantize_aware was given (fused if fuse=True)."
        )
    probes, index = [], {}
    for kind, name, _, _ in targets:
        key = (kind, name)
        if key in index:
            continue
        if kind == "input":
            tensor = float_model.inputs[name]
        elif kind == "output":
            tensor = float_model.get_layer(name).output
        else:
            tensor = float_model.get_layer(name).input
        index[key] = len(probes)
        probes.append(tensor)
    probe = keras.Model(float_model.inputs, probes)
    low = np.full(len(probes), np.inf)
    high = np.full(len(probes), -np.inf)
    pre_low, pre_high = {}, {}
    seen = 0
    for batch in _calibration_batches(calibration_data):
        values = probe(tf.convert_to_tensor(batch), training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        for i, v in enumerate(values):
            v = np.asarray(v)
            low[i], high[i] = min(low[i], v.min()), max(high[i], v.max())
        for kind, name, _, _ in targets:
            if kind == "pre_activation":
                y = np.asarray(_pre_activation(float_model.get_layer(name), values[index[(kind, name)]]))
                pre_low[name] = min(pre_low.get(name, np.inf), y.min())
                pre_high[name] = max(pre_high.get(name, -np.inf), y.max())
        seen += len(batch)
    if not seen:
        raise ValueError("`calibration_data` yielded no batch.")
    count = 0
    for kind, name, min_var, max_var in targets:
        if kind == "pre_activation":
            lo, hi = pre_low[name], pre_high[name]
        else:
            i = index[(kind, name)]
            lo, hi = low[i], high[i]
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo <= 0.0:  # a constant-zero tensor: any range represents it
            continue
        min_var.assign(lo)
        max_var.assign(hi)
        count += 1
    return count


def _has_layer(model, name):
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


def quantize_aware(model, calibration_data=None, fuse=True):
    """Returns a quantization-aware-training copy of a keras_convzoo model (tfmot, tf_keras).

    Every layer is wrapped by tensorflow-model-optimization with an int8
    QuantizeConfig: tfmot's default 8-bit configs for the standard Keras
    layers and the package's configs for its own layers (``GroupConv2D``,
    ``LayerScale``, ``StochasticDepth``, ``GELU``, ``ReparamLargeKernelConv``,
    ``ShiftConv2D``, ``ChannelShuffle``, ``ChannelSplit``,
    ``SpatialTransformer``, ``SqueezeExcite``, and the standard layers tfmot
    lacks: ``BatchNormalization`` outside a conv pattern,
    ``LayerNormalization``, ``Multiply``; see
    ``keras_convzoo.quantization.configs``). The continuous convolutions
    (``CKConv``, ``FlexConv``, ``SeparableFlexConv``) stay unquantized in
    their training form (NoOp config: their kernel is generated at run time)
    and get int8 kernels and output in their ``deploy=True`` form (which
    ``fuse=True`` gives).

    With ``fuse=True`` (the default) the model is first put in its deploy
    form by ``kcz.deploy.fuse``: BatchNormalizations folded into the
    convolutions, re-parameterised and continuous kernels merged. QAT then
    trains exactly the graph TFLite runs, so the int8 file reproduces the QAT
    model up to integer rounding, needs no calibration data, and has no
    separate BN ops. BN statistics are frozen into the weights (the usual
    practice for the last, short QAT phase). ``fuse=False`` keeps the BNs
    with tfmot's own handling (``Conv2D``/``DepthwiseConv2D`` + BN folded at
    conversion, where tfmot's per-tensor depthwise ranges make the file
    deviate by a few dB more; a BN after any other layer becomes int8
    MUL/ADD ops, whose ranges ``to_tflite`` then needs
    ``representative_data`` for).

    Activation ranges start at tfmot's [-6, 6] and move by a slow moving
    average (decay 0.999); pass ``calibration_data`` to start them at the
    observed ranges instead (``calibrate_ranges``), which a short fine-tune
    needs.

    Fine-tune the result with ``compile``/``fit``, then convert it with
    ``kcz.export.to_tflite(qat_model, path, quantization="int8")``: a
    full-integer file, checked to match the QAT model to
    ``QAT_INT8_MIN_SNR_DB`` (20 dB).

    tfmot only accepts tf_keras models, so this runs under tf_keras (DESIGN
    principle 2): ``TF_USE_LEGACY_KERAS=1 python train_qat.py``. Under Keras 3
    it raises with that command rather than rebuilding the model in the other
    Keras: the package's layers are defined on one Keras per process.

    Args:
        model: a built tf_keras functional or Sequential model, e.g. from
            ``kcz.create_model`` under ``TF_USE_LEGACY_KERAS=1``.
        calibration_data: optional typical inputs to set the initial int8
            ranges from: an array ``(N, ...)``, an iterable of batches
            (arrays or ``(inputs, targets)`` pairs, e.g. a
            ``tf.data.Dataset``), or a callable returning one.
        fuse: put the model in its deploy form first (see above).

    Returns:
        A new tf_keras model (``QuantizeWrapperV2`` layers, the weights of
        ``model``); ``model`` is unchanged. Compile it before training.

    Raises:
        RuntimeError: under Keras 3, naming the one-command way to run under
            tf_keras.
        ImportError: when tensorflow-model-optimization is not installed.
        TypeError: when ``model`` is not a functional or Sequential model,
            ``fuse`` is not a bool, or ``calibration_data`` is not data.
        ValueError: when a layer has no QuantizeConfig (the message names
            each such layer and its class).

    Example:
    >>> # TF_USE_LEGACY_KERAS=1 python train_qat.py
    >>> model = kcz.create_model("mobilenetv2_100", weights="m.weights.h5")
    >>> qat = kcz.quantization.quantize_aware(model, calibration_data=images[:256])
    >>> qat.compile("adam", "sparse_categorical_crossentropy")
    >>> qat.fit(train_ds, epochs=1)
    >>> kcz.export.to_tflite(qat, "m_int8.tflite", quantization="int8",
    ...                      input_shape=(224, 224, 3))
    """
    _require_legacy_keras()
    tfmot = _import_tfmot()
    from keras_convzoo.quantization import configs

    _check_model(model)
    if not isinstance(fuse, bool):
        raise TypeError(f"`fuse` must be a bool. Received: fuse={fuse!r}")
    _check_calibration_data(calibration_data)
    if fuse:
        from keras_convzoo.deploy import fuse as fuse_model

        model = fuse_model(model)
    problems = unsupported_layers(model)
    if problems:
        listed = "; ".join(f"'{n}' ({c}): {why}" for n, c, why in problems)
        raise ValueError(
            f"quantize_aware cannot quantize {len(problems)} layer(s) of model "
            f"'{model.name}': {listed}."
        )
    api = tfmot.quantization.keras
    with api.quantize_scope(configs.custom_objects()):
        annotated = api.quantize_annotate_model(model)
        qat_model = api.quantize_apply(annotated, scheme=configs.ZooQuantizeScheme())
    if calibration_data is not None:
        calibrate_ranges(qat_model, model, calibration_data)
    return qat_model
