"""SeparableFlexConv: depthwise FlexConv + bias + pointwise conv, the convolution of CCNN."""

from keras_convzoo.backend import register_serializable
from keras_convzoo.layers.continuous_conv import KAIMING_NORMAL, ContinuousConvBase


@register_serializable
class SeparableFlexConv(ContinuousConvBase):
    """Depthwise continuous (FlexConv) kernel, its bias, then a pointwise convolution.

    One generated kernel per input channel (MAGNet with ``in_channels``
    outputs, Gaussian mask, dynamic cropping, see ``FlexConv``), a depthwise
    "same"/causal convolution plus bias, then a pointwise ``in_channels ->
    filters`` convolution with bias (PyTorch's kaiming-normal init, zero
    bias); no norm or activation between them. The kernel network's output
    layer is scaled by ``sqrt(1 / K)`` at build (``K`` taps after the initial
    crop). This is the convolution of every published CCNN.

    Args:
        filters: output channels of the pointwise convolution.
        kernel_size: see ``FlexConv``.
        causal: see ``FlexConv``.
        mask_init: see ``FlexConv``.
        mask_threshold: see ``FlexConv``.
        dynamic_cropping: see ``FlexConv``.
        kernel_network: see ``FlexConv``.
        kernel_hidden: see ``FlexConv``.
        kernel_layers: see ``FlexConv``.
        omega_0: see ``FlexConv``.
        use_bias: the depthwise bias, see ``FlexConv``.
        conv_method: see ``FlexConv``.
        fft_threshold: see ``FlexConv``.
        resolution: see ``FlexConv``.
        train_size: see ``FlexConv``.
        seed: see ``FlexConv``.
        deploy: see ``FlexConv``.
        deploy_taps: see ``FlexConv``.
        pointwise_initializer: initializer of the pointwise kernel.
        **kwargs: base Layer arguments.

    Input shape:
        ``(batch, *spatial, channels)``, 1 to 3 spatial dims.

    Output shape:
        ``(batch, *spatial, filters)``.

    Example:
    >>> layer = SeparableFlexConv(140, kernel_size=1024, causal=True)
    >>> layer(tf.zeros((8, 1024, 3))).shape
    TensorShape([8, 1024, 140])

    Reference:
        Knigge, Romero et al., "Modelling Long Range Dependencies in ND:
        From Task-Specific to a General Purpose CNN", ICLR 2023.
    """

    mask = True
    separable = True

    def __init__(
        self,
        filters,
        kernel_size="same",
        causal=False,
        mask_init=0.075,
        mask_threshold=0.1,
        dynamic_cropping=True,
        kernel_network="magnet",
        kernel_hidden=32,
        kernel_layers=3,
        omega_0=2976.49,
        use_bias=True,
        conv_method="auto",
        fft_threshold=None,
        resolution="fixed",
        train_size=None,
        pointwise_initializer=KAIMING_NORMAL,
        seed=None,
        deploy=False,
        deploy_taps=None,
        **kwargs,
    ):
        super().__init__(
            filters, kernel_size=kernel_size, causal=causal, mask_init=mask_init, mask_threshold=mask_threshold,
            dynamic_cropping=dynamic_cropping, kernel_network=kernel_network, kernel_hidden=kernel_hidden, kernel_layers=kernel_layers,
            omega_0=omega_0, use_bias=use_bias, conv_method=conv_method, fft_threshold=fft_threshold,
            resolution=resolution, train_size=train_size, pointwise_initializer=pointwise_initializer,
            seed=seed, deploy=deploy, deploy_taps=deploy_taps, **kwargs,
        )
