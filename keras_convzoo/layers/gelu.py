"""GELU that converts to the TFLite GELU builtin."""

from keras_convzoo.backend import keras, register_serializable, tf


@register_serializable
class GELU(keras.layers.Layer):
    """Gaussian error linear unit computed with ``tf.nn.gelu``.

    Same values as ``keras.activations.gelu`` (exact erf form by default),
    but ``keras.activations.gelu`` lowers to ``Erfc``, which the TFLite
    converter rejects on dynamic shapes; ``tf.nn.gelu`` converts to the TFLite
    ``GELU`` builtin (measured on TF 2.21). In the TensorFlow graph it is
    ``0.5 * x * erfc(-x / sqrt(2))``; ``keras_convzoo.export.to_onnx`` teaches
    tf2onnx ``Erfc`` as ``1 - Erf``.

    Args:
        approximate: use the tanh approximation.
        **kwargs: base Layer arguments.

    Input shape:
        Any.

    Output shape:
        Same as the input.

    Example:
    >>> GELU()(tf.constant([0.0, 1.0])).numpy().round(4)
    array([0.    , 0.8413], dtype=float32)

    Reference:
        Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", 2016.
    """

    def __init__(self, approximate=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(approximate, bool):
            raise ValueError(f"`approximate` must be a bool. Received: approximate={approximate!r}")
        self.approximate = approximate

    def call(self, inputs):
        return tf.nn.gelu(inputs, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"approximate": self.approximate})
        return config
