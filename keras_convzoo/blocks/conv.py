"""The conv -> batch norm -> activation unit every block is made of."""

from keras_convzoo.backend import keras
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.layers.conv2d import conv2d_layer
from keras_convzoo.layers.depthwise_conv2d import depthwise_conv2d_layer
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.ops.padding import PADDING_MODES, same_padding_amounts

#: He-normal on fan-out, the initialisation of torchvision/timm ResNets and MobileNets.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}

_ACTIVATIONS = (None, "relu", "relu6")
#: Values of the ``downsample`` config field of families with a pooled stem (``stem_downsample``).
DOWNSAMPLE_MODES = ("pool", "conv")


def conv2d(
    x,
    filters,
    kernel_size,
    strides=1,
    groups=1,
    use_bias=False,
    padding_mode="torch",
    name="conv",
):
    """Adds a 2D convolution with "same"-style output size to the graph.

    Stride-1 convolutions use ``padding="same"``; strided ones get an explicit
    ``ZeroPadding2D`` (``name + "_pad"``) in the ``padding_mode`` convention
    (see ``keras_convzoo.ops.padding``) followed by a ``"valid"`` convolution,
    so the result does not depend on TensorFlow's bottom/right "same" rule.
    ``groups == 1`` gives ``Conv2D``, ``groups == in == filters`` gives
    ``DepthwiseConv2D``, anything else ``layers.GroupConv2D``.

    Args:
        x: 4D symbolic tensor.
        filters: output channels.
        kernel_size: odd int.
        strides: int.
        groups: int dividing the input channels and ``filters``.
        use_bias: bool.
        padding_mode: ``"torch"``, ``"keras"`` or ``"same"``.
        name: name of the convolution layer.

    Returns:
        The output tensor.

    Example:
    >>> inputs = keras.Input((32, 32, 3))
    >>> conv2d(inputs, 16, 3, strides=2, name="stem_conv").shape
    (None, 16, 16, 16)
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of {PADDING_MODES}. Received: padding_mode={padding_mode!r}"
        )
    in_channels = int(x.shape[-1])
    padding = "same"
    if strides > 1 and kernel_size > 1 and padding_mode != "same":
        pad = same_padding_amounts(kernel_size, tuple(x.shape[1:3]), padding_mode)
        x = keras.layers.ZeroPadding2D(padding=pad, name=f"{name}_pad")(x)
        padding = "valid"
    if groups == 1:
        layer = conv2d_layer(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            kernel_initializer=CONV_INITIALIZER,
            name=name,
        )
    elif groups == in_channels == filters:
        layer = depthwise_conv2d_layer(
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            depthwise_initializer=CONV_INITIALIZER,
            name=name,
        )
    else:
        layer = GroupConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=groups,
            use_bias=use_bias,
            kernel_initializer=CONV_INITIALIZER,
            name=name,
        )
    return layer(x)


def conv_bn_act(
    x,
    filters,
    kernel_size,
    strides=1,
    groups=1,
    activation="relu",
    padding_mode="torch",
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    zero_gamma=False,
    name="conv",
    suffixes=("conv", "bn", "relu"),
):
    """Adds ``conv2d`` + ``BatchNormalization`` + optional ReLU/ReLU6.

    Layers are named ``f"{name}_{suffix}"`` with ``suffixes`` (conv, bn, relu),
    so a block's layers read ``stage2_block1_conv1``, ``stage2_block1_bn1``...

    Args:
        x: 4D symbolic tensor.
        filters: see ``conv2d``.
        kernel_size: see ``conv2d``.
        strides: see ``conv2d``.
        groups: see ``conv2d``.
        activation: None, ``"relu"`` or ``"relu6"``.
        padding_mode: see ``conv2d``.
        bn_epsilon: batch norm epsilon.
        bn_momentum: batch norm momentum (Keras momentum, i.e.
            ``1 - torch_momentum``).
        zero_gamma: start the BN scale at zero (residual branch ends).
        name: prefix of the layer names.
        suffixes: names of the three layers after the prefix.

    Returns:
        The output tensor.

    Example:
    >>> inputs = keras.Input((32, 32, 16))
    >>> conv_bn_act(inputs, 8, 1, name="block").shape
    (None, 32, 32, 8)
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {_ACTIVATIONS}. Received: activation={activation!r}")
    conv_name, bn_name, act_name = (f"{name}_{s}" for s in suffixes)
    x = conv2d(x, filters, kernel_size, strides, groups, padding_mode=padding_mode, name=conv_name)
    x = BatchNormalization(
        epsilon=bn_epsilon,
        momentum=bn_momentum,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=bn_name,
    )(x)
    if activation == "relu":
        x = keras.layers.ReLU(name=act_name)(x)
    elif activation == "relu6":
        x = keras.layers.ReLU(6.0, name=act_name)(x)
    return x


def stem_downsample(
    x, downsample="pool", padding_mode="torch", bn_epsilon=1e-5, bn_momentum=0.9, name="stem_pool"
):
    """Adds the stride-2 reduction after a stem: a 3x3 max pool or a learned 3x3 conv.

    ``"pool"``: ``ZeroPadding2D(1)`` (``{name}_pad``) and
    ``MaxPooling2D(3, strides=2)`` (``{name}``), PyTorch's
    ``MaxPool2d(3, 2, padding=1)`` for the non-negative inputs a ReLU gives.
    ``"conv"``: ``conv_bn_act`` with the same channel count, 3x3, stride 2,
    ``padding_mode`` padding (``{name}_conv``, ``{name}_bn``, ``{name}_relu``): the
    all-convolutional variant, same output shape, ``9 C^2 + 2 C`` more
    trainable parameters (``+ 2 C`` BN statistics).

    Args:
        x: 4D symbolic tensor (the stem output, after its ReLU).
        downsample: ``"pool"`` or ``"conv"``.
        padding_mode: padding of the ``"conv"`` form (see ``blocks.conv2d``).
        bn_epsilon: batch norm epsilon of the ``"conv"`` form.
        bn_momentum: batch norm momentum of the ``"conv"`` form (Keras convention).
        name: prefix of the layer names.

    Returns:
        The downsampled tensor.

    Example:
    >>> inputs = keras.Input((32, 32, 16))
    >>> stem_downsample(inputs, "conv").shape
    (None, 16, 16, 16)
    """
    if downsample not in DOWNSAMPLE_MODES:
        raise ValueError(
            f"`downsample` must be one of {DOWNSAMPLE_MODES}. Received: downsample={downsample!r}"
        )
    if downsample == "conv":
        return conv_bn_act(
            x, int(x.shape[-1]), 3, 2, padding_mode=padding_mode, bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum, name=name,
        )
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)  # inputs >= 0 after ReLU
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)
