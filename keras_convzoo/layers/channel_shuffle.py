"""ShuffleNet's channel shuffle (reshape, transpose, reshape) for channels-last tensors."""

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_positive_int


@register_serializable
class ChannelShuffle(keras.layers.Layer):
    """Interleaves the channels of ``groups`` equal channel groups.

    With ``C`` channels cut into ``groups`` contiguous groups of ``n = C /
    groups``, input channel ``i * n + j`` (group ``i``, position ``j``) moves
    to output channel ``j * groups + i``: the channels are reshaped to
    ``(groups, n)``, transposed to ``(n, groups)`` and flattened again. This
    is torchvision's ``channel_shuffle`` on channels-last data, so a
    ShuffleNet block lets information flow between the groups of the next
    grouped operation. No weights, no FLOPs; it lowers to Reshape /
    Transpose / Reshape in TFLite and ONNX.

    Args:
        groups: int, number of groups; must divide the channel count
            (checked when the layer is built). ``groups=1`` is the identity.
        **kwargs: base Layer arguments (``name``, ``dtype``).

    Input shape:
        Tensor ``(batch, *spatial, channels)`` of rank >= 2 with known
        ``channels``; the batch and spatial sizes may be ``None``.

    Output shape:
        Same as the input.

    Example:
    >>> layer = ChannelShuffle(2)
    >>> layer(tf.reshape(tf.range(6.0), (1, 1, 1, 6)))[0, 0, 0].numpy()
    array([0., 3., 1., 4., 2., 5.], dtype=float32)

    Reference:
        Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
        Network for Mobile Devices", CVPR 2018; Ma et al., "ShuffleNet V2:
        Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018.
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = check_positive_int("groups", groups)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"ChannelShuffle '{self.name}' needs a tensor of rank >= 2 with a known channel "
                f"count. Received: input_shape={input_shape}"
            )
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(
                f"`groups` must divide the channel count of ChannelShuffle '{self.name}'. "
                f"Received: groups={self.groups}, channels={channels}"
            )
        self.built = True

    def call(self, inputs):
        if self.groups == 1:
            return inputs
        rank = inputs.shape.rank
        channels = int(inputs.shape[-1])
        leading = tf.shape(inputs)[:-1]
        x = tf.reshape(inputs, tf.concat([leading, [self.groups, channels // self.groups]], 0))
        x = tf.transpose(x, list(range(rank - 1)) + [rank, rank - 1])
        x = tf.reshape(x, tf.concat([leading, [channels]], 0))
        x.set_shape(inputs.shape)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config
