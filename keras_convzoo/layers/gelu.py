"""GELU that converts to the TFLite GELU builtin and to ONNX ``Erf``."""

import math

from keras_convzoo.backend import keras, register_serializable, tf


_INV_SQRT_2PI = 0.3989422804014327


def gelu_exact(x):
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))``, in the form every converter maps.

    ``tf.nn.gelu(x, approximate=False)`` (what ``keras.activations.gelu``
    runs) is ``0.5 * x * erfc(-x / sqrt(2))`` in the TensorFlow graph: TFLite
    fuses it into its ``GELU`` builtin, but tf2onnx has no ``Erfc`` handler,
    so Keras' own ``model.export(format="onnx")`` writes a file onnxruntime
    rejects. This erf form, in exactly this association, is still fused into
    the single TFLite ``GELU`` builtin by ``tf.lite.TFLiteConverter`` and is
    ``Erf`` in ONNX. (``x * (0.5 + 0.5 * erf(...))`` is not fused.) Values
    equal ``tf.nn.gelu`` to float rounding; for very negative ``x``, where
    GELU is below float32 resolution, both are 0 up to about 1e-7.

    Every exact GELU of the package's forward passes is this function.

    Args:
        x: a float tensor.

    Returns:
        GELU of ``x``, same shape and dtype.

    Example:
    >>> gelu_exact(tf.constant([-1.0, 0.0, 1.0])).numpy().round(4)
    array([-0.1587,  0.    ,  0.8413], dtype=float32)
    """
    return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))


@tf.custom_gradient
def gelu_exact_with_fused_gradient(x):
    """``gelu_exact`` whose gradient is one expression: ``Phi(x) + x * phi(x)``.

    TensorFlow's autodiff of the GELU graph differentiates it op by op; this
    one computes the derivative directly, which takes fewer passes over the
    tensor (forward + backward). Same forward values as ``gelu_exact`` and
    the same gradient to float rounding.

    Args:
        x: a float tensor.

    Returns:
        ``gelu_exact(x)``, differentiable.
    """
    one_plus_erf = 1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0)))
    y = 0.5 * x * one_plus_erf  # gelu_exact's ops in its order: the same values

    def grad(dy):  # Phi(x) = (1 + erf) / 2 from the forward pass (no second erf)
        return dy * (0.5 * one_plus_erf + x * tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI)

    return y, grad


@register_serializable
class GELU(keras.layers.Layer):
    """Gaussian error linear unit that converts to the TFLite builtin and to ONNX.

    Same values as ``keras.activations.gelu`` (exact erf form by default),
    but written as ``gelu_exact``: ``keras.activations.gelu`` is
    ``0.5 * x * erfc(-x / sqrt(2))`` in the TensorFlow graph, which tf2onnx
    cannot convert (Keras' own ``model.export(format="onnx")`` then writes an
    invalid file). ``gelu_exact`` converts to the TFLite ``GELU`` builtin and
    to ONNX ``Erf``. ``approximate=True`` is ``tf.nn.gelu``'s tanh form. In
    training (``training=True``) the exact form uses
    ``gelu_exact_with_fused_gradient``: same values, a cheaper gradient.

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
        if self.approximate:
            return tf.nn.gelu(inputs, approximate=True)
        if training:  # the cheaper gradient
            return gelu_exact_with_fused_gradient(inputs)
        return gelu_exact(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"approximate": self.approximate})
        return config
