"""GELU that converts to the TFLite GELU builtin."""

from keras_convzoo.backend import keras, register_serializable, tf


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@tf.custom_gradient
def gelu_exact_with_fused_gradient(x):
    """Exact GELU whose gradient is one expression: ``Phi(x) + x * phi(x)``.

    TensorFlow's own gradient of ``tf.nn.gelu`` differentiates
    ``0.5 * x * erfc(-x / sqrt(2))`` op by op; this one computes the
    derivative directly, which takes fewer passes over the tensor: forward +
    backward of an (8, 1024, 140) tensor 12-14 ms instead of 20-23 ms on the
    2-core CPU (graph mode). Same values (the forward is ``tf.nn.gelu``) and
    the same gradient to float rounding.

    Args:
        x: a float tensor.

    Returns:
        ``tf.nn.gelu(x)``, differentiable.
    """
    y = tf.nn.gelu(x, approximate=False)

    def grad(dy):
        cdf = 0.5 * tf.math.erfc(x * -_SQRT_HALF)
        return dy * (cdf + x * tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI)

    return y, grad


@register_serializable
class GELU(keras.layers.Layer):
    """Gaussian error linear unit computed with ``tf.nn.gelu``.

    Same values as ``keras.activations.gelu`` (exact erf form by default),
    but ``keras.activations.gelu`` lowers to ``Erfc``, which the TFLite
    converter rejects on dynamic shapes; ``tf.nn.gelu`` converts to the TFLite
    ``GELU`` builtin (measured on TF 2.21). In the TensorFlow graph it is
    ``0.5 * x * erfc(-x / sqrt(2))``; ``keras_convzoo.export.to_onnx`` teaches
    tf2onnx ``Erfc`` as ``1 - Erf``. In training (``training=True``) the exact
    form uses ``gelu_exact_with_fused_gradient``: same values, a cheaper
    gradient.

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

    def call(self, inputs, training=None):
        if training and not self.approximate:  # training: the cheaper gradient
            return gelu_exact_with_fused_gradient(inputs)
        return tf.nn.gelu(inputs, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"approximate": self.approximate})
        return config
