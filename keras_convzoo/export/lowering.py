"""Deployment lowerings chosen at export time (the model's numbers do not change).

``layers.GroupConv2D(implementation="auto")`` picks the lowering that is
fastest for *TensorFlow* on the current device: on CPU a depthwise
convolution plus a sum over each group, or one convolution per group, because
TensorFlow has no CPU kernel gradient for a grouped ``tf.nn.conv2d``. The
deployment runtimes have native grouped convolutions (TFLite ``CONV_2D`` with
a grouped filter, run by XNNPACK and by the builtin kernels; ONNX ``Conv``
with ``group``), so exporters trace every ``"auto"`` ``GroupConv2D`` in its
``"native"`` form: one op per grouped conv instead of 3 + groups ops. On the
2-core CPU this makes the fp32 TFLite ResNeXt50 (224x224, XNNPACK, 2 threads)
run in 180 ms instead of 335 ms, and it leaves no tensor inside the layer
that a full-integer file would have to calibrate separately. A
``GroupConv2D`` built with an explicit ``implementation`` keeps it.

Keras 3's ``LayerNormalization`` computes ``x * inv + (beta - mean * inv)``
with ``-mean`` as a separate ``Neg`` op, which TFLite has no int8 kernel for:
a full-integer file would keep one float ``DEQUANTIZE -> NEG -> QUANTIZE``
island per LayerNorm (ConvNeXt: 11). Exporters trace it as
``(x - mean) * rsqrt(var + eps) * gamma + beta`` instead (same numbers to
float rounding; tf_keras' LayerNormalization has no ``Neg`` and is left as it
is). Only the usual form is rewritten: normalization over the last axis, no
``rms_scaling``.
"""

import contextlib

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers.group_conv2d import GroupConv2D


def iter_layers(model):
    """Yields every layer of ``model``, through nested models and wrapper layers.

    Follows the sublayers each layer tracks (nested models, wrappers such as
    tfmot's ``QuantizeWrapper``, the localization network of a
    ``SpatialTransformer``).

    Args:
        model: a Keras 3 or tf_keras model or layer.

    Yields:
        Layers, each once.
    """
    seen = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        flatten = getattr(layer, "_flatten_layers", None)
        children = list(flatten(include_self=False, recursive=False)) if flatten else []
        stack.extend(reversed(children))


def _last_axis_only(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input.shape) if hasattr(layer, "input") else None
    return len(axis) == 1 and (axis[0] == -1 or (rank is not None and axis[0] == rank - 1))


def _rewritable_layer_norm(layer):
    return (
        not LEGACY_KERAS
        and type(layer) is keras.layers.LayerNormalization
        and not getattr(layer, "rms_scaling", False)
        and _last_axis_only(layer)
    )


def _layer_norm_without_neg(layer):
    """``call`` of a last-axis LayerNormalization written without a ``Neg`` op."""

    def call(inputs):
        x = tf.cast(inputs, tf.float32)
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(variance + layer.epsilon)
        if layer.scale:
            y = y * tf.cast(layer.gamma, tf.float32)
        if layer.center:
            y = y + tf.cast(layer.beta, tf.float32)
        return tf.cast(y, layer.compute_dtype)

    return call


@contextlib.contextmanager
def deployment_lowering(model):
    """Temporarily puts the layers of ``model`` in their deployment lowering (see module doc).

    ``"auto"`` ``GroupConv2D`` layers become ``"native"``; Keras 3
    ``LayerNormalization`` layers are traced without a ``Neg`` op. Trace the
    model for export inside this context; the layers are restored on exit,
    also when tracing fails.

    Args:
        model: a Keras 3 or tf_keras model.

    Yields:
        The number of layers switched.

    Example:
    >>> with deployment_lowering(model):
    ...     concrete = serve.get_concrete_function()
    """
    layers = list(iter_layers(model))
    switched = [
        layer for layer in layers if isinstance(layer, GroupConv2D) and layer.implementation == "auto"
    ]
    norms = [layer for layer in layers if _rewritable_layer_norm(layer)]
    try:
        for layer in switched:
            layer.implementation = "native"
        for layer in norms:
            layer.call = _layer_norm_without_neg(layer)
        yield len(switched) + len(norms)
    finally:
        for layer in switched:
            layer.implementation = "auto"
        for layer in norms:
            if "call" in vars(layer):
                del layer.call
