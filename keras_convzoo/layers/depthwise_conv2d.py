"""Keras' DepthwiseConv2D with a fast lowering under XLA on CPU and a fast kernel gradient in training."""

from keras_convzoo.backend import LEGACY_KERAS, keras, register_serializable, tf
from keras_convzoo.layers._conv_output import bias_and_activation
from keras_convzoo.ops.depthwise import (
    MAX_SHIFTED_TAPS,
    depthwise_conv2d_shifted,
    depthwise_conv2d_trainable,
    fast_filter_gradient_applies,
    in_xla_cpu_context,
)


@register_serializable
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` that stays fast when compiled with XLA on CPU.

    Same arguments, weights, initialisers and outputs as
    ``keras.layers.DepthwiseConv2D``. Inside ``jit_compile=True`` on a machine
    with no GPU, a channels-last, undilated kernel of at most
    ``ops.depthwise.MAX_SHIFTED_TAPS`` taps is computed as a sum of shifted
    products (``ops.depthwise.depthwise_conv2d_shifted``), which XLA fuses
    into one vectorised loop, instead of XLA's grouped convolution, which
    has no fast CPU kernel (many times slower than TensorFlow's own
    depthwise kernel; see ``keras_convzoo.ops.depthwise`` and the
    documentation's benchmarks page). In a training step (``training=True``,
    trainable layer) a stride-1 kernel of more than 9 taps (ConvNeXt's 7x7)
    takes its kernel gradient from ``ops.depthwise.depthwise_conv2d_trainable``
    (one depthwise convolution instead of TensorFlow's much slower
    ``DepthwiseConv2dNativeBackpropFilter``; same forward op, same results up
    to float summation order). Everywhere else (inference, GPU, TFLite/ONNX
    export) it is Keras' layer unchanged.

    It takes the arguments of ``keras.layers.DepthwiseConv2D``
    (``kernel_size``, ``strides``, ``padding``, ``depth_multiplier``,
    ``use_bias``, initialisers, ...) and defines no ``__init__`` of its own.

    Input shape:
        ``(batch, height, width, channels)`` (channels last; ``None`` spatial
        sizes allowed).

    Output shape:
        ``(batch, new_height, new_width, channels * depth_multiplier)``, as
        Keras' layer.

    Example:
    >>> layer = DepthwiseConv2D(7, padding="same")
    >>> y = tf.function(layer, jit_compile=True)(tf.ones((1, 14, 14, 8)))
    >>> y.shape
    TensorShape([1, 14, 14, 8])

    Reference:
        Chollet, "Xception: Deep Learning with Depthwise Separable
        Convolutions", CVPR 2017 (the depthwise convolution).
    """

    def _shifted_form_applies(self):
        kernel_size = tuple(self.kernel_size)
        return (
            self.data_format == "channels_last"
            and tuple(self.dilation_rate) == (1, 1)
            and self.padding in ("same", "valid")
            and kernel_size[0] * kernel_size[1] <= MAX_SHIFTED_TAPS
            and in_xla_cpu_context()
        )

    def _fast_gradient_applies(self, training):
        return (
            bool(training)
            and self.trainable
            and self.data_format == "channels_last"
            and self.padding in ("same", "valid")
            and fast_filter_gradient_applies(self.kernel_size, self.strides, self.dilation_rate,
                                             self.depth_multiplier)
        )

    def call(self, inputs, training=None):
        kernel = self.depthwise_kernel if LEGACY_KERAS else self.kernel
        if self._shifted_form_applies():
            outputs = depthwise_conv2d_shifted(inputs, kernel, tuple(self.strides), self.padding)
        elif self._fast_gradient_applies(training):
            outputs = depthwise_conv2d_trainable(inputs, tf.convert_to_tensor(kernel), self.padding)
        else:
            return super().call(inputs)
        return bias_and_activation(self, outputs)


def depthwise_conv2d_layer(*args, **kwargs):
    """The depthwise conv layer the package's builders use.

    ``layers.DepthwiseConv2D`` under Keras 3; Keras' own
    ``DepthwiseConv2D`` under tf_keras, where tensorflow-model-optimization
    (QAT) matches layers by their exact class.

    Args:
        *args, **kwargs: those of ``keras.layers.DepthwiseConv2D``.

    Returns:
        A depthwise conv layer.
    """
    cls = keras.layers.DepthwiseConv2D if LEGACY_KERAS else DepthwiseConv2D
    return cls(*args, **kwargs)
