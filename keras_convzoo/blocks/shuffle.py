"""ShuffleNetV2's building unit (channel split, two branches, concat, channel shuffle)."""

from keras_convzoo.backend import keras
from keras_convzoo.blocks.conv import conv_bn_act
from keras_convzoo.layers.channel_shuffle import ChannelShuffle
from keras_convzoo.layers.channel_split import ChannelSplit


def shufflenet_v2_block(
    x,
    filters,
    strides=1,
    padding_mode="torch",
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    name="block",
):
    """Adds a ShuffleNetV2 unit, torchvision's ``InvertedResidual`` layer for layer.

    - ``strides == 1``: the input is split into two channel halves
      (``{name}_split``); the first is kept, the second goes through
      ``branch2`` = 1x1 conv + BN + ReLU, 3x3 depthwise + BN, 1x1 conv + BN +
      ReLU. Needs ``filters == in_channels``.
    - ``strides == 2``: no split; ``branch1`` = 3x3 depthwise stride 2 + BN,
      1x1 conv + BN + ReLU, and ``branch2`` (as above, depthwise stride 2)
      both read the whole input.

    The two halves are concatenated (``{name}_concat``, branch1/identity
    first) and shuffled with two groups (``{name}_shuffle``). Convolutions
    have no bias; layer names are ``{name}_branch2_pw1_conv``,
    ``{name}_branch2_dw_bn``, ``{name}_branch1_pw_relu``...

    Args:
        x: 4D symbolic tensor.
        filters: even int, output channels (each branch gives half).
        strides: 1 or 2.
        padding_mode: padding of the strided depthwise convs, ``"torch"``
            (symmetric, as torchvision) or ``"keras"``/``"same"``.
        bn_epsilon: batch norm epsilon.
        bn_momentum: batch norm momentum (Keras convention).
        name: prefix of the layer names.

    Returns:
        The block output ``(batch, H / strides, W / strides, filters)``.

    Example:
    >>> inputs = keras.Input((32, 32, 24))
    >>> shufflenet_v2_block(inputs, 48, strides=2, name="stage2_block1").shape
    (None, 16, 16, 48)

    Reference:
        Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
        Architecture Design", ECCV 2018.
    """
    if strides not in (1, 2):
        raise ValueError(f"`strides` must be 1 or 2. Received: strides={strides!r}")
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 2 or filters % 2:
        raise ValueError(f"`filters` must be an even int >= 2. Received: filters={filters!r}")
    in_channels = int(x.shape[-1])
    if strides == 1 and in_channels != filters:
        raise ValueError(
            "A stride-1 ShuffleNetV2 block keeps the channel count: `filters` must equal the "
            f"input channels. Received: filters={filters}, input channels={in_channels}"
        )
    half = filters // 2
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, padding_mode=padding_mode)

    if strides == 1:
        shortcut, y = ChannelSplit(2, name=f"{name}_split")(x)
    else:
        shortcut = conv_bn_act(
            x, in_channels, 3, strides, groups=in_channels, activation=None,
            name=f"{name}_branch1_dw", **bn,
        )
        shortcut = conv_bn_act(shortcut, half, 1, name=f"{name}_branch1_pw", **bn)
        y = x
    y = conv_bn_act(y, half, 1, name=f"{name}_branch2_pw1", **bn)
    y = conv_bn_act(
        y, half, 3, strides, groups=half, activation=None, name=f"{name}_branch2_dw", **bn
    )
    y = conv_bn_act(y, half, 1, name=f"{name}_branch2_pw2", **bn)
    x = keras.layers.Concatenate(name=f"{name}_concat")([shortcut, y])
    return ChannelShuffle(2, name=f"{name}_shuffle")(x)
