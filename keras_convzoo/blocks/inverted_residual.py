"""MobileNetV2's inverted residual block with a linear bottleneck."""

from keras_convzoo.backend import keras
from keras_convzoo.blocks.conv import conv_bn_act


def inverted_residual_block(
    x,
    filters,
    strides=1,
    expansion=6,
    padding_mode="keras",
    bn_epsilon=1e-3,
    bn_momentum=0.999,
    name="block",
):
    """Adds 1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 linear projection + BN.

    The expansion is skipped when ``expansion == 1`` (MobileNetV2's first
    block); the residual is added when the stride is 1 and the channel count
    is unchanged, exactly as keras.applications.MobileNetV2.

    Args:
        x: 4D symbolic tensor.
        filters: output channels.
        strides: 1 or 2, stride of the depthwise convolution.
        expansion: expansion factor t of the paper.
        padding_mode: padding of strided depthwise convs, ``"keras"``
            (keras.applications' correct_pad) or ``"torch"`` (symmetric, timm).
        bn_epsilon: batch norm epsilon (keras.applications: 1e-3).
        bn_momentum: batch norm momentum (keras.applications: 0.999).
        name: prefix of the layer names.

    Returns:
        The block output.

    Example:
    >>> inputs = keras.Input((32, 32, 16))
    >>> inverted_residual_block(inputs, 24, strides=2).shape
    (None, 16, 16, 24)
    """
    in_channels = int(x.shape[-1])
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, padding_mode=padding_mode)
    y = x
    hidden = in_channels * expansion
    if expansion != 1:
        y = conv_bn_act(y, hidden, 1, activation="relu6", name=f"{name}_expand", **bn)
    y = conv_bn_act(
        y, hidden, 3, strides, groups=hidden, activation="relu6", name=f"{name}_dw", **bn
    )
    y = conv_bn_act(y, filters, 1, activation=None, name=f"{name}_project", **bn)
    if strides == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y
