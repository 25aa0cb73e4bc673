"""Public layers of keras_convzoo (one class per file, file = snake_case(class))."""

from keras_convzoo.backend import LEGACY_KERAS

from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.layers.channel_shuffle import ChannelShuffle
from keras_convzoo.layers.channel_split import ChannelSplit
from keras_convzoo.layers.ck_conv import CKConv
from keras_convzoo.layers.conv2d import Conv2D
from keras_convzoo.layers.depthwise_conv2d import DepthwiseConv2D
from keras_convzoo.layers.flex_conv import FlexConv
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.kernel_mlp import KernelMLP
from keras_convzoo.layers.layer_normalization import LayerNormalization
from keras_convzoo.layers.layer_scale import LayerScale
from keras_convzoo.layers.magnet import MAGNet
from keras_convzoo.layers.reparam_large_kernel_conv import ReparamLargeKernelConv
from keras_convzoo.layers.separable_flex_conv import SeparableFlexConv
from keras_convzoo.layers.shift_conv2d import ShiftConv2D
from keras_convzoo.layers.spatial_transformer import SpatialTransformer
from keras_convzoo.layers.squeeze_excite import SqueezeExcite
from keras_convzoo.layers.stochastic_depth import StochasticDepth

__all__ = [
    "BatchNormalization",
    "ChannelShuffle",
    "ChannelSplit",
    "CKConv",
    "Conv2D",
    "DepthwiseConv2D",
    "FlexConv",
    "GELU",
    "GroupConv2D",
    "KernelMLP",
    "LayerNormalization",
    "LayerScale",
    "MAGNet",
    "ReparamLargeKernelConv",
    "SeparableFlexConv",
    "ShiftConv2D",
    "SpatialTransformer",
    "SqueezeExcite",
    "StochasticDepth",
]


def custom_objects():
    """The package's layers by name, for ``from_config``/``load_model`` ``custom_objects``.

    ``Conv2D``, ``DepthwiseConv2D``, ``LayerNormalization`` and
    ``BatchNormalization`` are keyed by their registered names only (``"keras_convzoo>DepthwiseConv2D"``): under their
    bare names they would replace Keras' own layers in every config
    deserialised with these objects (tfmot matches them by their exact
    class). With tf_keras, ``BatchNormalization`` is Keras' own and is left
    out.

    Returns:
        dict, name -> class.
    """
    shadowing = ("Conv2D", "DepthwiseConv2D", "LayerNormalization", "BatchNormalization")
    objects = {name: globals()[name] for name in __all__ if name not in shadowing}
    objects["keras_convzoo>Conv2D"] = Conv2D
    objects["keras_convzoo>DepthwiseConv2D"] = DepthwiseConv2D
    objects["keras_convzoo>LayerNormalization"] = LayerNormalization
    if not LEGACY_KERAS:
        objects["keras_convzoo>BatchNormalization"] = BatchNormalization
    return objects

