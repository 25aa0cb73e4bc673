"""Splits a tensor into equal channel groups (ShuffleNetV2's channel split)."""

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_positive_int


@register_serializable
class ChannelSplit(keras.layers.Layer):
    """Cuts the channels into ``num_splits`` equal contiguous parts.

    Returns a list of ``num_splits`` tensors; part ``i`` holds channels
    ``i * n:(i + 1) * n`` with ``n = channels / num_splits`` (PyTorch's
    ``x.chunk(num_splits, dim=1)`` on channels-last data). Keras has no
    standard layer for this; ShuffleNetV2's stride-1 block uses it to keep one
    half of its input as the identity branch. Lowers to one Split op in
    TFLite and ONNX.

    Args:
        num_splits: int >= 1, number of parts; must divide the channel count
            (checked when the layer is built).
        **kwargs: base Layer arguments (``name``, ``dtype``).

    Input shape:
        Tensor ``(batch, *spatial, channels)`` of rank >= 2 with known
        ``channels``; batch and spatial sizes may be ``None``.

    Output shape:
        A list of ``num_splits`` tensors ``(batch, *spatial, channels /
        num_splits)``.

    Example:
    >>> left, right = ChannelSplit(2)(tf.zeros((1, 8, 8, 16)))
    >>> left.shape, right.shape
    (TensorShape([1, 8, 8, 8]), TensorShape([1, 8, 8, 8]))

    Reference:
        Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
        Architecture Design", ECCV 2018.
    """

    def __init__(self, num_splits=2, **kwargs):
        super().__init__(**kwargs)
        self.num_splits = check_positive_int("num_splits", num_splits)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"ChannelSplit '{self.name}' needs a tensor of rank >= 2 with a known channel "
                f"count. Received: input_shape={input_shape}"
            )
        if int(input_shape[-1]) % self.num_splits:
            raise ValueError(
                f"`num_splits` must divide the channel count of ChannelSplit '{self.name}'. "
                f"Received: num_splits={self.num_splits}, channels={input_shape[-1]}"
            )
        self.built = True

    def call(self, inputs):
        return tf.split(inputs, self.num_splits, axis=-1)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        part = input_shape[:-1] + (int(input_shape[-1]) // self.num_splits,)
        return [part for _ in range(self.num_splits)]

    def get_config(self):
        config = super().get_config()
        config.update({"num_splits": self.num_splits})
        return config
