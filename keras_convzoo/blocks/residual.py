"""ResNet basic and bottleneck blocks (ResNeXt cardinality and SE included)."""

from keras_convzoo.backend import keras
from keras_convzoo.blocks.conv import conv_bn_act
from keras_convzoo.blocks.squeeze_excite import squeeze_excite


def _shortcut(x, out_channels, strides, bn_epsilon, bn_momentum, name):
    if strides == 1 and int(x.shape[-1]) == out_channels:
        return x
    return conv_bn_act(
        x,
        out_channels,
        1,
        strides=strides,
        activation=None,
        bn_epsilon=bn_epsilon,
        bn_momentum=bn_momentum,
        name=f"{name}_downsample",
    )


def _last_conv_se_merge(y, shortcut, out_channels, kernel_size, index, se_ratio, se_divisor,
                        zero_init_last, name, bn):
    """The end every residual block shares: conv + BN (no act), optional SE, add, ReLU."""
    y = conv_bn_act(
        y,
        out_channels,
        kernel_size,
        activation=None,
        zero_gamma=zero_init_last,
        name=name,
        suffixes=(f"conv{index}", f"bn{index}", ""),
        **bn,
    )
    if se_ratio:
        y = squeeze_excite(y, se_ratio, se_divisor, name=f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def bottleneck_block(
    x,
    planes,
    strides=1,
    cardinality=1,
    base_width=64,
    expansion=4,
    se_ratio=None,
    se_divisor=8,
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    zero_init_last=True,
    name="block",
):
    """Adds a ResNet v1.5 bottleneck: 1x1, grouped 3x3 (with the stride), 1x1, optional SE.

    Layout and widths follow torchvision/timm: the 3x3 width is
    ``int(planes * base_width / 64) * cardinality``, the output has
    ``planes * expansion`` channels, the shortcut is a strided 1x1 conv + BN
    when the shape changes, SE sits after the last BN.

    Args:
        x: 4D symbolic tensor.
        planes: base channel count of the stage (64, 128, 256, 512 in ResNet-50).
        strides: stride of the 3x3 convolution.
        cardinality: number of groups of the 3x3 convolution (ResNeXt).
        base_width: width per group at ``planes=64`` (ResNeXt's "d").
        expansion: output channels / planes.
        se_ratio: None, or the squeeze-excite reduction ratio (1/16).
        se_divisor: rounding multiple of the SE width.
        bn_epsilon: batch norm epsilon.
        bn_momentum: batch norm momentum (Keras convention).
        zero_init_last: start the last BN scale at zero (timm's default).
        name: prefix of the layer names, e.g. ``"stage1_block1"``.

    Returns:
        The block output.

    Example:
    >>> inputs = keras.Input((16, 16, 64))
    >>> bottleneck_block(inputs, 64, cardinality=32, base_width=4).shape
    (None, 16, 16, 256)
    """
    width = int(planes * base_width / 64) * cardinality
    out_channels = planes * expansion
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    shortcut = _shortcut(x, out_channels, strides, name=name, **bn)
    y = conv_bn_act(x, width, 1, name=name, suffixes=("conv1", "bn1", "relu1"), **bn)
    y = conv_bn_act(
        y, width, 3, strides, groups=cardinality, name=name, suffixes=("conv2", "bn2", "relu2"), **bn
    )
    return _last_conv_se_merge(
        y, shortcut, out_channels, 1, 3, se_ratio, se_divisor, zero_init_last, name, bn
    )


def basic_block(
    x,
    planes,
    strides=1,
    se_ratio=None,
    se_divisor=8,
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    zero_init_last=True,
    name="block",
):
    """Adds a ResNet basic block: two 3x3 conv + BN, optional SE, residual, ReLU.

    Args:
        x: 4D symbolic tensor.
        planes: output channels.
        strides: stride of the first 3x3 convolution.
        se_ratio: None, or the squeeze-excite reduction ratio.
        se_divisor: rounding multiple of the SE width.
        bn_epsilon: batch norm epsilon.
        bn_momentum: batch norm momentum (Keras convention).
        zero_init_last: start the last BN scale at zero.
        name: prefix of the layer names.

    Returns:
        The block output.

    Example:
    >>> inputs = keras.Input((16, 16, 64))
    >>> basic_block(inputs, 128, strides=2).shape
    (None, 8, 8, 128)
    """
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    shortcut = _shortcut(x, planes, strides, name=name, **bn)
    y = conv_bn_act(x, planes, 3, strides, name=name, suffixes=("conv1", "bn1", "relu1"), **bn)
    return _last_conv_se_merge(
        y, shortcut, planes, 3, 2, se_ratio, se_divisor, zero_init_last, name, bn
    )
