"""Keras' LayerNormalization with a closed-form gradient in training steps."""

from keras_convzoo.backend import LEGACY_KERAS, keras, register_serializable
from keras_convzoo.ops.layer_norm import layer_norm_trainable


@register_serializable
class LayerNormalization(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` whose training steps take a cheaper gradient.

    Same arguments, weights and inference outputs as
    ``keras.layers.LayerNormalization``. In a training step
    (``training=True``, trainable layer) a last-axis normalization with
    ``center`` and ``scale`` and without ``rms_scaling`` runs
    ``ops.layer_norm.layer_norm_trainable`` (closed-form gradient, fewer
    passes over the tensor; values equal to float rounding). Everywhere else
    (inference, export) it is Keras' layer unchanged.

    It takes the arguments of ``keras.layers.LayerNormalization`` and
    defines no ``__init__`` of its own.

    Input shape:
        Any; normalized over ``axis``.

    Output shape:
        Same as the input.

    Example:
    >>> layer = LayerNormalization(epsilon=1e-6)
    >>> layer(tf.random.normal((2, 4, 4, 8)), training=True).shape
    TensorShape([2, 4, 4, 8])
    """

    def _fast_gradient_applies(self, inputs, training):
        rank = len(inputs.shape)
        axis = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        return (
            bool(training)
            and self.trainable
            and not LEGACY_KERAS
            and self.center
            and self.scale
            and not getattr(self, "rms_scaling", False)
            and [a % rank for a in axis] == [rank - 1]
        )

    def call(self, inputs, training=None):
        if not self._fast_gradient_applies(inputs, training):
            return super().call(inputs)
        return keras.ops.cast(layer_norm_trainable(inputs, self.gamma, self.beta, self.epsilon), self.compute_dtype)


def layer_normalization_layer(*args, **kwargs):
    """The layer-norm layer the package's builders use.

    ``layers.LayerNormalization`` under Keras 3; Keras' own under tf_keras
    (tensorflow-model-optimization matches layers by their exact class).

    Args:
        *args, **kwargs: those of ``keras.layers.LayerNormalization``.

    Returns:
        A layer-norm layer.
    """
    cls = keras.layers.LayerNormalization if LEGACY_KERAS else LayerNormalization
    return cls(*args, **kwargs)
