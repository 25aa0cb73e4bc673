"""Public layers of keras_convzoo (one class per file, file = snake_case(class))."""

from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["GroupConv2D", "SqueezeExcite"]
