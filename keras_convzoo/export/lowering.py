"""Deployment lowerings chosen at export time (the model's numbers do not change).

``layers.GroupConv2D(implementation="auto")`` picks the lowering that is
fastest for *TensorFlow* on the current device: on CPU a depthwise
convolution plus a sum over each group, or one convolution per group, because
TensorFlow has no CPU kernel gradient for a grouped ``tf.nn.conv2d``. The
deployment runtimes have native grouped convolutions (TFLite ``CONV_2D`` with
a grouped filter, run by XNNPACK and by the builtin kernels; ONNX ``Conv``
with ``group``), so exporters trace every ``"auto"`` ``GroupConv2D`` in its
``"native"`` form: one op per grouped conv instead of 3 + groups ops, faster,
and no tensor inside the layer that a full-integer file would have to
calibrate separately. A ``GroupConv2D`` built with an explicit
``implementation`` keeps it.

TFLite only, opt-in (``dense_group_channels``): grouped convolutions with few
input channels per group can instead be traced as one dense convolution with
a block-diagonal filter (``groups`` times the multiply-accumulates, zeros
included). In full-integer files on x86 CPUs with int8 dot-product
instructions this can be much faster, because XNNPACK's int8 grouped kernel is
slow for narrow groups; in float32, or on a CPU without int8 dot products, it
is slower, so the default stays native: measure on the target device
(``tools/export_matrix.py --dense-group-channels N``).

Keras 3's ``LayerNormalization`` computes ``x * inv + (beta - mean * inv)``
with ``-mean`` as a separate ``Neg`` op, which TFLite has no int8 kernel for:
a full-integer file would keep one float ``DEQUANTIZE -> NEG -> QUANTIZE``
island per LayerNorm. Exporters trace it as
``(x - mean) * rsqrt(var + eps) * gamma + beta`` instead (same numbers to
float rounding; tf_keras' LayerNormalization has no ``Neg`` and is left as it
is). Only the usual form is rewritten: normalization over the last axis, no
``rms_scaling``. The variance is written as ``mean(d * d)`` with
``d = x - mean`` (``SUB`` and ``MUL``) rather than ``SquaredDifference``:
XNNPACK runs int8 ``SUB``/``MUL`` but has no int8 ``SQUARED_DIFFERENCE``, so
fewer delegate partitions remain.

TFLite only (``depthwise_max_taps``): depthwise convolutions with more than
25 taps (``keras.layers.DepthwiseConv2D``, so ``layers.DepthwiseConv2D``
too; a Keras ``Conv2D`` with one input channel per group; the large kernel
of ``layers.ReparamLargeKernelConv``; the baked kernel of a fused 1D or 2D
``layers.SeparableFlexConv``, CCNN's convolution) are traced as a sum of depthwise
convolutions of at most 25 taps each
(``ops.depthwise.depthwise_conv2d_tiled``): XNNPACK's one-pass depthwise
kernels go up to 25 taps, and its multipass kernel is much slower per tap.
The price is some int8 accuracy (each ADD of the pieces re-quantizes); the
pieces are added smallest first (by the magnitude of their weights, read at
export time), which loses least where a kernel is concentrated at its
centre, and ``to_tflite`` still verifies the file. Keras models under
tf_keras (QAT) are left as they are.

The measurements behind these choices (dated, with their machines) are on the
documentation's benchmarks page (``docs/benchmarks/index.md``).
"""

import contextlib

import numpy as np

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers.continuous_conv import ContinuousConvBase
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.layer_normalization import LayerNormalization
from keras_convzoo.layers.reparam_large_kernel_conv import ReparamLargeKernelConv
from keras_convzoo.ops.depthwise import depthwise_conv2d_tiled

#: Default ``depthwise_max_taps`` of the TFLite export: XNNPACK's largest
#: one-pass depthwise kernel (5x5). See ``ops.depthwise.depthwise_conv2d_tiled``.
DEPTHWISE_MAX_TAPS = 25


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
        and type(layer) in (keras.layers.LayerNormalization, LayerNormalization)
        and not getattr(layer, "rms_scaling", False)
        and _last_axis_only(layer)
    )


def _layer_norm_without_neg(layer):
    """``call`` of a last-axis LayerNormalization without ``Neg`` or ``SquaredDifference`` ops."""

    def call(inputs, training=None):  # the package's LayerNormalization takes `training` (its training gradient)
        x = tf.cast(inputs, tf.float32)
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
        y = centred * tf.math.rsqrt(variance + layer.epsilon)
        if layer.scale:
            y = y * tf.cast(layer.gamma, tf.float32)
        if layer.center:
            y = y + tf.cast(layer.beta, tf.float32)
        return tf.cast(y, layer.compute_dtype)

    return call


def _taps(kernel_size):
    return int(kernel_size[0]) * int(kernel_size[1])


def _plain_2d(layer):
    """Channels-last, undilated, "same"/"valid" 2D convolution."""
    return (
        getattr(layer, "data_format", "channels_last") == "channels_last"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.padding in ("same", "valid")
    )


def _depthwise_kernel(layer):
    """``(kh, kw, C, M)`` kernel of a Keras depthwise layer, or of a Conv2D with one channel per group."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return layer.kernel
    kh, kw, _, filters = layer.kernel.shape
    return tf.reshape(layer.kernel, (kh, kw, layer.groups, filters // layer.groups))


def _worth_tiling(kernel_size, max_taps):
    return _taps(kernel_size) > max_taps


def _tileable_depthwise(layer, max_taps):
    """True for a Keras 3 depthwise convolution of more than ``max_taps`` taps that can be tiled."""
    if LEGACY_KERAS or max_taps is None:
        return False
    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) or (
        type(layer) is keras.layers.Conv2D and layer.groups > 1 and layer.built and layer.kernel.shape[2] == 1
    )
    return depthwise and _plain_2d(layer) and _worth_tiling(layer.kernel_size, max_taps)


def _tap_weights(kernel):
    """``(kh, kw)`` magnitudes of a ``(kh, kw, ...)`` kernel's taps (pieces are added smallest first)."""
    values = np.abs(keras.ops.convert_to_numpy(kernel))
    return values.reshape(values.shape[:2] + (-1,)).sum(axis=-1)


def _tiled_depthwise_call(layer, max_taps):
    """``call`` of a depthwise layer written as depthwise pieces of at most ``max_taps`` taps."""
    weights = _tap_weights(_depthwise_kernel(layer))

    def call(inputs, training=None):  # the package's DepthwiseConv2D takes `training` (its training gradient)
        kernel = _depthwise_kernel(layer)
        y = depthwise_conv2d_tiled(inputs, kernel, tuple(layer.strides), layer.padding, max_taps, weights)
        if layer.use_bias:
            y = y + tf.cast(layer.bias, y.dtype)
        return layer.activation(y) if layer.activation is not None else y

    return call


def _tiled_reparam_dw(layer, max_taps):
    """``_dw`` of a ``ReparamLargeKernelConv`` that tiles kernels of more than ``max_taps`` taps."""
    original = layer._dw
    kernels = [getattr(layer, name, None) for name in ("large_kernel", "small_kernel_weight")]
    weights = {id(kernel): _tap_weights(kernel) for kernel in kernels if kernel is not None}

    def dw(x, kernel, training=None):
        if not _worth_tiling(kernel.shape, max_taps):
            return original(x, kernel, training)
        strides = (layer.strides, layer.strides)
        return depthwise_conv2d_tiled(x, tf.cast(kernel, x.dtype), strides, "same", max_taps, weights.get(id(kernel)))

    return dw


def _tileable_continuous(layer, max_taps):
    """True for the baked depthwise kernel of a fused (``deploy=True``) 1D/2D separable continuous conv worth tiling."""
    if LEGACY_KERAS or max_taps is None or not isinstance(layer, ContinuousConvBase):
        return False
    if not (layer.built and layer.separable and layer.deploy and layer.dims in (1, 2)):
        return False
    taps = tuple(int(t) for t in layer.baked_kernel.shape[: layer.dims])
    return _worth_tiling((1,) + taps if layer.dims == 1 else taps, max_taps)


def _tiled_continuous_depthwise(layer, max_taps):
    """``_depthwise`` of a continuous conv as depthwise pieces of at most ``max_taps`` taps.

    The centred padding of ``ops.fft_conv`` (``(k - 1) // 2`` before) is
    TensorFlow's "same" at stride 1; a causal 1D kernel pads ``k - 1`` before
    and convolves "valid".
    """

    baked = keras.ops.convert_to_numpy(layer.baked_kernel)
    weights = _tap_weights(baked if layer.dims == 2 else baked[None])

    def depthwise(x, kernel):
        kernel = tf.cast(kernel, x.dtype)
        if layer.dims == 2:
            return depthwise_conv2d_tiled(x, kernel[..., None], (1, 1), "same", max_taps, weights)
        padding = "same"
        if layer.causal:
            x = tf.pad(x, [[0, 0], [int(kernel.shape[0]) - 1, 0], [0, 0]])
            padding = "valid"
        y = depthwise_conv2d_tiled(x[:, None], kernel[None, :, :, None], (1, 1), padding, max_taps, weights)
        return y[:, 0]

    return depthwise


def _constant_normalization(layer):
    """``call`` of a ``Normalization`` (Keras 3 or tf_keras) with its mean and variance traced as constants.

    Given ``mean=``/``variance=``, the layer holds them as eager tensors,
    which a traced function captures as extra inputs: tf2onnx then writes a
    file with three inputs. Same numbers, as constants.
    """
    mean = np.asarray(layer.mean)
    std = np.maximum(np.sqrt(np.asarray(layer.variance)), keras.backend.epsilon())

    def call(inputs):
        inputs = tf.cast(inputs, layer.compute_dtype)
        return (inputs - tf.constant(mean, inputs.dtype)) / tf.constant(std, inputs.dtype)

    return call


def _rewritable_normalization(layer):
    return (
        type(layer) is keras.layers.Normalization
        and not getattr(layer, "invert", False)
        and getattr(layer, "mean", None) is not None
    )


def _overrides(layers, max_taps):
    """``{id: (layer, attribute, replacement)}``: the methods traced differently for export."""
    overrides = {}
    for layer in layers:
        if _rewritable_normalization(layer):
            overrides[id(layer)] = (layer, "call", _constant_normalization(layer))
        elif _rewritable_layer_norm(layer):
            overrides[id(layer)] = (layer, "call", _layer_norm_without_neg(layer))
        elif _tileable_depthwise(layer, max_taps):
            overrides[id(layer)] = (layer, "call", _tiled_depthwise_call(layer, max_taps))
        elif isinstance(layer, ReparamLargeKernelConv) and not LEGACY_KERAS and max_taps is not None:
            overrides[id(layer)] = (layer, "_dw", _tiled_reparam_dw(layer, max_taps))
        elif _tileable_continuous(layer, max_taps):
            overrides[id(layer)] = (layer, "_depthwise", _tiled_continuous_depthwise(layer, max_taps))
    return overrides


def _check_optional_count(name, value, allow_auto=False):
    """Raises ``ValueError`` unless ``value`` is None, an int >= 1 (or ``"auto"`` when allowed)."""
    if allow_auto and value == "auto":
        return
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        allowed = "'auto', None or an int >= 1" if allow_auto else "None or an int >= 1"
        raise ValueError(f"`{name}` must be {allowed}. Received: {name}={value!r}")


def check_depthwise_max_taps(value, allow_auto=False):
    """Raises ``ValueError`` unless ``value`` is None, an int >= 1 (or ``"auto"`` when allowed)."""
    _check_optional_count("depthwise_max_taps", value, allow_auto)


def check_dense_group_channels(value):
    """Raises ``ValueError`` unless ``value`` is None or an int >= 1."""
    _check_optional_count("dense_group_channels", value)


@contextlib.contextmanager
def deployment_lowering(model, depthwise_max_taps=None, dense_group_channels=None):
    """Temporarily puts the layers of ``model`` in their deployment lowering (see module doc).

    ``"auto"`` ``GroupConv2D`` layers become ``"native"`` (``"dense"`` where
    a group has at most ``dense_group_channels`` input channels); Keras 3
    ``LayerNormalization`` layers are traced without ``Neg`` and
    ``SquaredDifference`` ops; with ``depthwise_max_taps``, depthwise
    convolutions of more taps (also the baked kernels of fused continuous
    convolutions) are traced as sums of smaller ones. Trace the
    model for export inside this context; the layers are restored on exit,
    also when tracing fails.

    Args:
        model: a Keras 3 or tf_keras model.
        depthwise_max_taps: None (no tiling) or an int >= 1: the most taps
            of one depthwise piece (TFLite: ``DEPTHWISE_MAX_TAPS``).
        dense_group_channels: None, or an int >= 1: ``"auto"`` grouped
            convolutions (more than one group) with at most this many input
            channels per group are traced as one dense convolution with a
            block-diagonal filter (``GroupConv2D(implementation="dense")``).

    Yields:
        The number of layers switched.

    Raises:
        ValueError: when ``depthwise_max_taps`` or ``dense_group_channels``
            is not None or an int >= 1.

    Example:
    >>> with deployment_lowering(model, depthwise_max_taps=25):
    ...     concrete = serve.get_concrete_function()
    """
    check_depthwise_max_taps(depthwise_max_taps)
    check_dense_group_channels(dense_group_channels)
    layers = list(iter_layers(model))
    switched = [
        layer for layer in layers if isinstance(layer, GroupConv2D) and layer.implementation == "auto"
    ]
    overrides = _overrides(layers, depthwise_max_taps)
    try:
        for layer in switched:
            dense = (
                dense_group_channels is not None
                and layer.groups > 1
                and layer.in_channels // layer.groups <= dense_group_channels
            )
            layer.implementation = "dense" if dense else "native"
        for layer, attribute, replacement in overrides.values():
            setattr(layer, attribute, replacement)
        yield len(switched) + len(overrides)
    finally:
        for layer in switched:
            layer.implementation = "auto"
        for layer, attribute, _ in overrides.values():
            if attribute in vars(layer):
                delattr(layer, attribute)
