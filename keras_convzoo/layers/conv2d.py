"""Keras' Conv2D whose 1x1 kernels train with a matrix-product kernel gradient."""

from keras_convzoo.backend import LEGACY_KERAS, keras, register_serializable, tf
from keras_convzoo.layers._conv_output import bias_and_activation
from keras_convzoo.ops.pointwise import pointwise_conv2d_trainable


@register_serializable
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose 1x1 kernels take a faster gradient in training steps.

    Same arguments, weights, initialisers and outputs as
    ``keras.layers.Conv2D``. In a ``mixed_bfloat16`` training step
    (``training=True``, trainable layer, bfloat16 inputs) a 1x1, stride-1,
    undilated, ungrouped, channels-last convolution computes its kernel
    gradient as one matrix product
    (``ops.pointwise.pointwise_conv2d_trainable``; same forward op, same
    results up to float summation order): oneDNN's bfloat16 matrix product
    uses AMX where its convolution weight gradient does not (ResNeXt50's step
    0.82-0.87x). In float32 the two are on a par, so float32 keeps Keras'
    path, as do inference, TFLite/ONNX export and other kernels.

    It takes the arguments of ``keras.layers.Conv2D`` and defines no
    ``__init__`` of its own.

    Input shape:
        ``(batch, height, width, channels)``.

    Output shape:
        ``(batch, new_height, new_width, filters)``, as Keras' layer.

    Example:
    >>> layer = Conv2D(16, 1)
    >>> layer(tf.ones((2, 8, 8, 4)), training=True).shape
    TensorShape([2, 8, 8, 16])
    """

    def _fast_gradient_applies(self, inputs, training):
        return (
            bool(training)
            and inputs.dtype == tf.bfloat16
            and self.trainable
            and not LEGACY_KERAS
            and self.data_format == "channels_last"
            and tuple(self.kernel_size) == (1, 1)
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
        )

    def call(self, inputs, training=None):
        if not self._fast_gradient_applies(inputs, training):
            return super().call(inputs)
        outputs = pointwise_conv2d_trainable(inputs, tf.convert_to_tensor(self.kernel))
        return bias_and_activation(self, outputs)


def conv2d_layer(*args, **kwargs):
    """The ungrouped conv layer the package's builders use.

    ``layers.Conv2D`` under Keras 3; Keras' own ``Conv2D`` under tf_keras,
    where tensorflow-model-optimization (QAT) matches layers by their exact
    class.

    Args:
        *args, **kwargs: those of ``keras.layers.Conv2D``.

    Returns:
        A conv layer.
    """
    cls = keras.layers.Conv2D if LEGACY_KERAS else Conv2D
    return cls(*args, **kwargs)
