"""Squeeze-and-excitation channel attention as one reusable layer."""

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_choice
from keras_convzoo.layers.gelu import gelu_exact
from keras_convzoo.ops.divisible import se_channels

_ACTIVATIONS = ("relu", "relu6", "swish", "silu", "gelu")
_GATES = ("sigmoid", "hard_sigmoid")


@register_serializable
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation: rescales channels by a gate computed from their means.

    ``y = x * gate(W2 act(W1 mean(x) + b1) + b2)``, the mean taken over every
    spatial axis, so the layer works on 1D, 2D and 3D feature maps. The
    squeeze width is ``se_channels(channels, ratio, divisor)``.

    The applications of the zoo build the same computation from standard
    layers (``keras_convzoo.blocks.squeeze_excite``) so their graphs stay flat
    for export and quantization; this layer is the self-contained form for
    your own models.

    Args:
        ratio: float in (0, 1], reduction ratio (SENet: 1/16).
        divisor: int or None; the squeeze width is rounded to a multiple of
            it (timm: 8). None keeps ``int(channels * ratio)``.
        activation: activation after the squeeze, one of ``"relu"``,
            ``"relu6"``, ``"swish"``, ``"silu"``, ``"gelu"``.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"``.
        kernel_initializer: kernel initializer of both layers.
        bias_initializer: bias initializer of both layers.
        **kwargs: base Layer arguments.

    Input shape:
        ``(batch, *spatial, channels)`` with 1 to 3 spatial axes.

    Output shape:
        Same as the input.

    Example:
    >>> se = SqueezeExcite(ratio=0.25)
    >>> se(tf.ones((2, 8, 8, 16))).shape
    TensorShape([2, 8, 8, 16])

    Reference:
        Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.
    """

    def __init__(
        self,
        ratio=1 / 16,
        divisor=8,
        activation="relu",
        gate="sigmoid",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        se_channels(16, ratio, divisor)  # validates ratio and divisor
        self.ratio = ratio
        self.divisor = divisor
        self.activation = check_choice("activation", activation, _ACTIVATIONS)
        self.gate = check_choice("gate", gate, _GATES)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) not in (3, 4, 5) or input_shape[-1] is None:
            raise ValueError(
                "SqueezeExcite expects (batch, *spatial, channels) with 1-3 spatial axes "
                f"and known channels. Received: input_shape={tuple(input_shape)}"
            )
        channels = int(input_shape[-1])
        self.squeeze_channels = se_channels(channels, self.ratio, self.divisor)
        add = self.add_weight
        self.reduce_kernel = add(
            name="reduce_kernel",
            shape=(channels, self.squeeze_channels),
            initializer=self.kernel_initializer,
        )
        self.reduce_bias = add(
            name="reduce_bias", shape=(self.squeeze_channels,), initializer=self.bias_initializer
        )
        self.expand_kernel = add(
            name="expand_kernel",
            shape=(self.squeeze_channels, channels),
            initializer=self.kernel_initializer,
        )
        self.expand_bias = add(
            name="expand_bias", shape=(channels,), initializer=self.bias_initializer
        )
        self.built = True

    def call(self, inputs):
        axes = list(range(1, len(inputs.shape) - 1))
        dtype = inputs.dtype
        s = tf.reduce_mean(inputs, axis=axes, keepdims=True)
        s = tf.tensordot(s, tf.cast(self.reduce_kernel, dtype), axes=1)
        s = _activate(s + tf.cast(self.reduce_bias, dtype), self.activation)
        s = tf.tensordot(s, tf.cast(self.expand_kernel, dtype), axes=1)
        s = s + tf.cast(self.expand_bias, dtype)
        s = tf.sigmoid(s) if self.gate == "sigmoid" else tf.nn.relu6(s + 3.0) / 6.0
        return inputs * s

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "divisor": self.divisor,
                "activation": self.activation,
                "gate": self.gate,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _activate(x, name):
    if name == "relu":
        return tf.nn.relu(x)
    if name == "relu6":
        return tf.nn.relu6(x)
    if name in ("swish", "silu"):
        return tf.nn.silu(x)
    return gelu_exact(x)
