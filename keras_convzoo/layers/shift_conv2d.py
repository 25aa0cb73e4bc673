"""Shift + pointwise convolution: a zero-FLOP, zero-parameter spatial operator."""

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_positive_int, normalize_pair
from keras_convzoo.ops.shift import MIN_SHIFT_CHANNELS, shift2d


@register_serializable
class ShiftConv2D(keras.layers.Layer):
    """Spatial shift of channel groups followed by a 1x1 convolution.

    Replaces a ``k x k`` convolution by an operator whose spatial part costs
    nothing: the input channels are cut into nine groups, eight of which are
    moved by one pixel towards one of the eight neighbours (zero fill at the
    borders) and one left in place; a pointwise ``1x1`` convolution then mixes
    the channels, so every output sees the 3x3 neighbourhood.

    Channel-to-direction assignment (``keras_convzoo.ops.shift``): with ``C``
    input channels and ``g = max(1, C // 9)``, channels ``k*g:(k+1)*g`` for
    ``k = 0..7`` take their value from the neighbour at offset
    ``(dy, dx)`` in ``(-1,-1), (-1,0), (-1,1), (0,-1), (0,1), (1,-1), (1,0),
    (1,1)`` (``out[y, x] = in[y + dy, x + dx]``, zero outside the image), and
    the remaining ``C - 8g`` channels are not shifted. Group ``k`` therefore
    equals a depthwise 3x3 "same" convolution with a kernel that is one-hot
    at ``(dy + 1, dx + 1)``. The shift is written as one pad and one slice per
    group (TFLite/ONNX friendly, no convolution), see ``ops.shift2d``.

    The only weights are those of the pointwise convolution, stored as
    ``keras.layers.Conv2D(filters, 1)`` stores them (kernel
    ``(1, 1, C, filters)``, then bias), so ``set_weights`` moves them between
    the two.

    Args:
        filters: int, output channels of the pointwise convolution.
        strides: int or pair of ints, strides of the pointwise convolution
            (subsampling after the shift; 1 by default).
        use_bias: bool, whether the pointwise convolution has a bias.
        kernel_initializer: as in ``keras.layers.Conv2D``.
        bias_initializer: as in ``keras.layers.Conv2D``.
        kernel_regularizer: as in ``keras.layers.Conv2D``.
        bias_regularizer: as in ``keras.layers.Conv2D``.
        **kwargs: base Layer arguments (``name``, ``dtype``, ``trainable``).

    Input shape:
        4D tensor ``(batch, height, width, channels)`` with ``channels >= 8``
        known; batch and spatial sizes may be ``None``.

    Output shape:
        4D tensor ``(batch, ceil(height / sh), ceil(width / sw), filters)``.

    Example:
    >>> layer = ShiftConv2D(32)
    >>> layer(tf.zeros((1, 16, 16, 18))).shape
    TensorShape([1, 16, 16, 32])

    Reference:
        Wu et al., "Shift: A Zero FLOP, Zero Parameter Alternative to Spatial
        Convolutions", CVPR 2018.
    """

    def __init__(
        self,
        filters,
        strides=1,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = normalize_pair("strides", strides)
        if not isinstance(use_bias, bool):
            raise TypeError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or int(channels) < MIN_SHIFT_CHANNELS:
            raise ValueError(
                f"ShiftConv2D '{self.name}' needs a known count of at least {MIN_SHIFT_CHANNELS} "
                f"input channels (one per shift direction). Received: input_shape={tuple(input_shape)}"
            )
        channels = int(channels)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(1, 1, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            trainable=True,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                trainable=True,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        self.built = True

    def call(self, inputs):
        x = shift2d(inputs)
        x = tf.nn.conv2d(
            x,
            tf.cast(self.kernel, x.dtype),
            strides=(1,) + self.strides + (1,),
            padding="SAME",
        )
        if self.use_bias:
            x = tf.nn.bias_add(x, tf.cast(self.bias, x.dtype))
        return x

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        spatial = tuple(
            None if size is None else -(-int(size) // stride)
            for size, stride in zip(input_shape[1:3], self.strides)
        )
        return (input_shape[0],) + spatial + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
