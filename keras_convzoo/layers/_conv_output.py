"""The bias and activation tail shared by the package's Keras conv subclasses."""

from keras_convzoo.backend import tf


def bias_and_activation(layer, outputs):
    """``outputs`` plus ``layer.bias`` (when ``use_bias``) through ``layer.activation``, as Keras' conv layers end.

    Args:
        layer: a Keras conv layer (``use_bias``, ``bias``, ``activation``).
        outputs: the convolution's output tensor.

    Returns:
        The layer's output tensor.
    """
    if layer.use_bias:
        outputs = outputs + tf.cast(layer.bias, outputs.dtype)
    return layer.activation(outputs) if layer.activation is not None else outputs
