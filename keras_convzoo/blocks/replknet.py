"""RepLKNet's two blocks: the large-kernel block and the convolutional FFN."""

from keras_convzoo.backend import keras
from keras_convzoo.blocks.conv import CONV_INITIALIZER, conv_bn_act
from keras_convzoo.blocks.convnext import drop_path_add
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.reparam_large_kernel_conv import ReparamLargeKernelConv

_BN = dict(epsilon=1e-5, momentum=0.9)


def replk_block(
    x,
    kernel_size=31,
    small_kernel=5,
    dw_ratio=1.0,
    drop_path_rate=0.0,
    deploy=False,
    name="replk",
):
    """Adds RepLKNet's large-kernel block to the graph.

    ``x + DropPath(BN(conv1x1(ReLU(LK(ReLU(BN(conv1x1(BN(x)))))))))`` where
    ``LK`` is a ``layers.ReparamLargeKernelConv`` (a ``kernel_size`` depthwise
    kernel with a parallel ``small_kernel`` branch, merged into one kernel
    when ``deploy=True``). The first BN is the block's pre-norm. Layer names:
    ``{name}_pre_bn``, ``_pw1_conv``, ``_pw1_bn``, ``_pw1_relu``,
    ``_large_kernel``, ``_lk_relu``, ``_pw2_conv``, ``_pw2_bn``,
    ``_drop_path`` (only when ``drop_path_rate > 0``), ``_add``.

    Args:
        x: 4D symbolic tensor ``(batch, height, width, channels)``.
        kernel_size: odd large kernel size (RepLKNet-31: 31, 29, 27, 13).
        small_kernel: odd small kernel size or None.
        dw_ratio: channels of the depthwise part relative to ``channels``.
        drop_path_rate: stochastic depth probability of this block.
        deploy: build the large kernel in its merged inference form.
        name: prefix of the layer names.

    Returns:
        The block output (same shape as ``x``).

    Example:
    >>> inputs = keras.Input((14, 14, 64))
    >>> replk_block(inputs, kernel_size=13, name="stage4_block1_replk").shape
    (None, 14, 14, 64)

    Reference:
        Ding et al., "Scaling Up Your Kernels to 31x31: Revisiting Large
        Kernel Design in CNNs", CVPR 2022.
    """
    channels = int(x.shape[-1])
    dw_channels = int(channels * dw_ratio)
    y = BatchNormalization(name=f"{name}_pre_bn", **_BN)(x)
    y = conv_bn_act(y, dw_channels, 1, name=f"{name}_pw1")
    y = ReparamLargeKernelConv(
        kernel_size,
        small_kernel=small_kernel,
        deploy=deploy,
        kernel_initializer=CONV_INITIALIZER,
        name=f"{name}_large_kernel",
    )(y)
    y = keras.layers.ReLU(name=f"{name}_lk_relu")(y)
    y = conv_bn_act(y, channels, 1, activation=None, name=f"{name}_pw2")
    return drop_path_add(x, y, drop_path_rate, name)


def conv_ffn_block(x, ffn_ratio=4.0, drop_path_rate=0.0, name="ffn"):
    """Adds RepLKNet's ConvFFN block to the graph.

    ``x + DropPath(BN(conv1x1(GELU(BN(conv1x1(BN(x)))))))`` with a hidden
    width of ``ffn_ratio * channels`` and exact GELU (``layers.GELU``, the
    TFLite builtin). Layer names: ``{name}_pre_bn``, ``_pw1_conv``,
    ``_pw1_bn``, ``_gelu``, ``_pw2_conv``, ``_pw2_bn``, ``_drop_path``,
    ``_add``.

    Args:
        x: 4D symbolic tensor.
        ffn_ratio: hidden width relative to the input channels.
        drop_path_rate: stochastic depth probability of this block.
        name: prefix of the layer names.

    Returns:
        The block output (same shape as ``x``).

    Example:
    >>> inputs = keras.Input((14, 14, 64))
    >>> conv_ffn_block(inputs, name="stage4_block1_ffn").shape
    (None, 14, 14, 64)

    Reference:
        Ding et al., "Scaling Up Your Kernels to 31x31: Revisiting Large
        Kernel Design in CNNs", CVPR 2022.
    """
    channels = int(x.shape[-1])
    y = BatchNormalization(name=f"{name}_pre_bn", **_BN)(x)
    y = conv_bn_act(y, int(channels * ffn_ratio), 1, activation=None, name=f"{name}_pw1")
    y = GELU(name=f"{name}_gelu")(y)
    y = conv_bn_act(y, channels, 1, activation=None, name=f"{name}_pw2")
    return drop_path_add(x, y, drop_path_rate, name)
