"""Squeeze-and-excitation built from standard Keras layers (flat graph)."""

from keras_convzoo.backend import keras
from keras_convzoo.ops.divisible import se_channels


def squeeze_excite(x, ratio=1 / 16, divisor=8, name="se"):
    """Adds timm's SE module as standard layers: pool, 1x1 conv, ReLU, 1x1 conv, sigmoid, multiply.

    Same computation as ``keras_convzoo.layers.SqueezeExcite``; the layer
    names (``{name}_pool``, ``{name}_fc1``, ``{name}_relu``, ``{name}_fc2``,
    ``{name}_gate``, ``{name}_scale``) mirror timm's ``se.fc1`` / ``se.fc2``.

    Args:
        x: 4D symbolic tensor.
        ratio: reduction ratio.
        divisor: rounding multiple of the squeeze width (None: plain int).
        name: prefix of the layer names.

    Returns:
        ``x`` rescaled channel-wise.

    Example:
    >>> inputs = keras.Input((8, 8, 64))
    >>> squeeze_excite(inputs, name="se").shape
    (None, 8, 8, 64)
    """
    channels = int(x.shape[-1])
    squeeze = se_channels(channels, ratio, divisor)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Conv2D(squeeze, 1, use_bias=True, name=f"{name}_fc1")(s)
    s = keras.layers.ReLU(name=f"{name}_relu")(s)
    s = keras.layers.Conv2D(channels, 1, use_bias=True, name=f"{name}_fc2")(s)
    s = keras.layers.Activation("sigmoid", name=f"{name}_gate")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])
