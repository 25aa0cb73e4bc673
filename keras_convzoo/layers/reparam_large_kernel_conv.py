"""RepLKNet's re-parameterisable large-kernel depthwise convolution."""

import numpy as np

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_positive_int
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.ops.batch_norm import bn_inference_affine
from keras_convzoo.ops.depthwise import depthwise_conv2d_trainable, fast_filter_gradient_applies


def _fold_bn(kernel, bn):
    """Folds an inference BatchNormalization into a depthwise kernel (k, k, C, 1)."""
    scale, shift = bn_inference_affine(bn)
    return kernel * scale.reshape(1, 1, -1, 1), shift


@register_serializable
class ReparamLargeKernelConv(keras.layers.Layer):
    """Depthwise large kernel + parallel small kernel, each with BN; one kernel at inference.

    Training form (``deploy=False``): ``BN(dw_conv_k(x)) + BN(dw_conv_s(x))``
    with a large ``k x k`` and a small ``s x s`` depthwise kernel ("same"
    padding, same stride). Inference form (``deploy=True``): one ``k x k``
    depthwise kernel with bias, obtained by folding each BN into its kernel,
    zero-padding the small kernel to ``k x k`` and adding
    (``merged_weights()``; ``keras_convzoo.deploy.fuse`` does it for a
    whole model). Both forms give the same inference output.

    Args:
        kernel_size: odd int, the large kernel (RepLKNet: 31, 29, 27, 13).
        small_kernel: odd int not larger than ``kernel_size`` (RepLKNet: 5), or
            None for no parallel branch.
        strides: int, stride of both branches.
        deploy: build the merged inference form.
        bn_epsilon: epsilon of the two BNs (PyTorch's default).
        bn_momentum: momentum of the two BNs (PyTorch's default, Keras convention).
        kernel_initializer: initializer of the kernels.
        **kwargs: base Layer arguments.

    Input shape:
        ``(batch, height, width, channels)``.

    Output shape:
        ``(batch, ceil(height / strides), ceil(width / strides), channels)``.

    Example:
    >>> layer = ReparamLargeKernelConv(31, small_kernel=5)
    >>> layer(tf.zeros((1, 16, 16, 8))).shape
    TensorShape([1, 16, 16, 8])

    Reference:
        Ding et al., "Scaling Up Your Kernels to 31x31: Revisiting Large
        Kernel Design in CNNs" (RepLKNet), CVPR 2022.
    """

    def __init__(
        self,
        kernel_size=31,
        small_kernel=5,
        strides=1,
        deploy=False,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        if small_kernel is not None:
            check_positive_int("small_kernel", small_kernel)
            if small_kernel % 2 == 0 or small_kernel > kernel_size:
                raise ValueError(
                    "`small_kernel` must be odd and at most `kernel_size`, or None. "
                    f"Received: small_kernel={small_kernel}, kernel_size={kernel_size}"
                )
        self.small_kernel = small_kernel
        self.strides = check_positive_int("strides", strides)
        if not isinstance(deploy, bool):
            raise ValueError(f"`deploy` must be a bool. Received: deploy={deploy!r}")
        self.deploy = deploy
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels is None:
            raise ValueError(
                "ReparamLargeKernelConv expects (batch, height, width, channels) with known channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        channels = int(channels)
        k = self.kernel_size
        self.large_kernel = self.add_weight(
            name="large_kernel", shape=(k, k, channels, 1), initializer=self.kernel_initializer
        )
        if self.deploy:
            self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")
        else:
            bn = dict(epsilon=self.bn_epsilon, momentum=self.bn_momentum)
            self.large_bn = BatchNormalization(name="large_bn", **bn)
            self.large_bn.build(tuple(input_shape[:-1]) + (channels,))
            if self.small_kernel:
                s = self.small_kernel
                self.small_kernel_weight = self.add_weight(
                    name="small_kernel", shape=(s, s, channels, 1), initializer=self.kernel_initializer
                )
                self.small_bn = BatchNormalization(name="small_bn", **bn)
                self.small_bn.build(tuple(input_shape[:-1]) + (channels,))
        self.built = True

    def _dw(self, x, kernel, training=None):
        size = int(kernel.shape[0])
        if training and self.trainable and fast_filter_gradient_applies((size, size), (self.strides, self.strides)):
            return depthwise_conv2d_trainable(x, tf.convert_to_tensor(kernel), "same")  # fast kernel gradient
        return tf.nn.depthwise_conv2d(
            x, tf.cast(kernel, x.dtype), (1, self.strides, self.strides, 1), "SAME"
        )

    def call(self, inputs, training=None):
        if self.deploy:
            return tf.nn.bias_add(self._dw(inputs, self.large_kernel), tf.cast(self.bias, inputs.dtype))
        y = self.large_bn(self._dw(inputs, self.large_kernel, training), training=training)
        if self.small_kernel:
            y = y + self.small_bn(self._dw(inputs, self.small_kernel_weight, training), training=training)
        return y

    def merged_weights(self):
        """Weights of the ``deploy=True`` form: ``[kernel (k, k, C, 1), bias (C,)]``.

        Uses the BN moving statistics (inference behaviour).
        """
        if self.deploy:
            return [np.array(self.large_kernel), np.array(self.bias)]
        kernel, bias = _fold_bn(np.array(self.large_kernel), self.large_bn)
        if self.small_kernel:
            small, small_bias = _fold_bn(np.array(self.small_kernel_weight), self.small_bn)
            pad = (self.kernel_size - self.small_kernel) // 2
            kernel = kernel + np.pad(small, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
            bias = bias + small_bias
        return [kernel.astype("float32"), bias.astype("float32")]

    def compute_output_shape(self, input_shape):
        size = [None if d is None else -(-int(d) // self.strides) for d in input_shape[1:3]]
        return (input_shape[0], size[0], size[1], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "small_kernel": self.small_kernel,
                "strides": self.strides,
                "deploy": self.deploy,
                "bn_epsilon": self.bn_epsilon,
                "bn_momentum": self.bn_momentum,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
