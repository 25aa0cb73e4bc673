"""The ConvNeXt block: 7x7 depthwise, LayerNorm, 4x MLP with GELU, layer scale, residual."""

from keras_convzoo.backend import keras
from keras_convzoo.layers.depthwise_conv2d import depthwise_conv2d_layer
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.layer_normalization import layer_normalization_layer
from keras_convzoo.layers.layer_scale import LayerScale
from keras_convzoo.layers.stochastic_depth import StochasticDepth


def drop_path_add(x, y, drop_path_rate, name):
    """Adds ``x + StochasticDepth(y)`` (``{name}_drop_path`` only when the rate is > 0, ``{name}_add``)."""
    if drop_path_rate:
        y = StochasticDepth(drop_path_rate, name=f"{name}_drop_path")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def convnext_block(
    x,
    kernel_size=7,
    mlp_ratio=4,
    layer_scale_init_value=1e-6,
    drop_path_rate=0.0,
    norm_epsilon=1e-6,
    name="block",
):
    """Adds a ConvNeXt block (timm/keras.applications layout) to the graph.

    ``DepthwiseConv2D(k, "same")`` -> ``LayerNormalization`` -> ``Dense(ratio * C)``
    -> ``GELU`` (TFLite builtin) -> ``Dense(C)`` -> ``LayerScale`` ->
    ``StochasticDepth`` (only when ``drop_path_rate > 0``) -> residual add.
    Layer names: ``{name}_dw_conv``, ``_norm``, ``_pw_conv1``, ``_gelu``,
    ``_pw_conv2``, ``_layer_scale``, ``_drop_path``, ``_add``.

    Args:
        x: 4D symbolic tensor.
        kernel_size: depthwise kernel size.
        mlp_ratio: hidden width of the MLP over the channels.
        layer_scale_init_value: initial layer scale; None or 0 for none.
        drop_path_rate: stochastic depth probability of this block.
        norm_epsilon: LayerNorm epsilon.
        name: prefix of the layer names.

    Returns:
        The block output (same shape as ``x``).

    Example:
    >>> inputs = keras.Input((14, 14, 96))
    >>> convnext_block(inputs, name="stage1_block1").shape
    (None, 14, 14, 96)

    Reference:
        Liu et al., "A ConvNet for the 2020s", CVPR 2022.
    """
    channels = int(x.shape[-1])
    y = depthwise_conv2d_layer(kernel_size, padding="same", name=f"{name}_dw_conv")(x)
    y = layer_normalization_layer(epsilon=norm_epsilon, name=f"{name}_norm")(y)
    y = keras.layers.Dense(mlp_ratio * channels, name=f"{name}_pw_conv1")(y)
    y = GELU(name=f"{name}_gelu")(y)
    y = keras.layers.Dense(channels, name=f"{name}_pw_conv2")(y)
    if layer_scale_init_value:
        y = LayerScale(layer_scale_init_value, name=f"{name}_layer_scale")(y)
    return drop_path_add(x, y, drop_path_rate, name)
