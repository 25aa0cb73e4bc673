"""Per-channel learnable scaling of a residual branch (CaiT / ConvNeXt)."""

from keras_convzoo.backend import keras, register_serializable, tf


@register_serializable
class LayerScale(keras.layers.Layer):
    """Multiplies the last axis by a learned vector initialised to a small constant.

    Args:
        init_value: float, initial value of every scale (ConvNeXt: 1e-6).
        **kwargs: base Layer arguments.

    Input shape:
        Any tensor with a known last axis ``C``.

    Output shape:
        Same as the input.

    Example:
    >>> LayerScale(1e-6)(tf.ones((2, 4, 4, 8))).shape
    TensorShape([2, 4, 4, 8])

    Reference:
        Touvron et al., "Going deeper with Image Transformers" (CaiT), ICCV 2021.
    """

    def __init__(self, init_value=1e-6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(init_value, bool) or not isinstance(init_value, (int, float)):
            raise ValueError(f"`init_value` must be a number. Received: init_value={init_value!r}")
        self.init_value = float(init_value)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"LayerScale needs a known last axis. Received: input_shape={tuple(input_shape)}")
        self.gamma = self.add_weight(
            name="gamma",
            shape=(int(input_shape[-1]),),
            initializer=keras.initializers.Constant(self.init_value),
            trainable=True,
        )
        self.built = True

    def call(self, inputs):
        return inputs * tf.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value})
        return config
