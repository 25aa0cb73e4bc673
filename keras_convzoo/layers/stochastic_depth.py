"""Per-sample stochastic depth (DropPath) for residual branches."""

from keras_convzoo.backend import keras, register_serializable, tf


@register_serializable
class StochasticDepth(keras.layers.Layer):
    """Drops a residual branch for whole samples during training; identity at inference.

    In training, each sample's branch is zeroed with probability ``rate`` and
    the kept ones are scaled by ``1 / (1 - rate)`` (timm's ``DropPath``; Keras'
    ConvNeXt drops per batch instead).

    Args:
        rate: float in [0, 1), the drop probability.
        seed: optional int seed of the random draws.
        **kwargs: base Layer arguments.

    Input shape:
        Any tensor with a batch axis.

    Output shape:
        Same as the input.

    Example:
    >>> layer = StochasticDepth(0.1)
    >>> layer(tf.ones((4, 8)), training=False).shape
    TensorShape([4, 8])

    Reference:
        Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"`rate` must be a float in [0, 1). Received: rate={rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.rate = float(rate)
        self.seed = seed

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = tf.concat([tf.shape(inputs)[:1], tf.ones([tf.rank(inputs) - 1], tf.int32)], 0)
        mask = tf.floor(keep + tf.random.uniform(shape, dtype=inputs.dtype, seed=self.seed))
        return inputs / keep * mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
