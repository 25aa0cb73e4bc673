"""Block functions that add standard (and package) layers to a functional graph."""

from keras_convzoo.blocks.ccnn import ccnn_block
from keras_convzoo.blocks.conv import conv2d, conv_bn_act, stem_downsample
from keras_convzoo.blocks.convnext import convnext_block
from keras_convzoo.blocks.inverted_residual import inverted_residual_block
from keras_convzoo.blocks.replknet import conv_ffn_block, replk_block
from keras_convzoo.blocks.residual import basic_block, bottleneck_block
from keras_convzoo.blocks.shuffle import shufflenet_v2_block
from keras_convzoo.blocks.squeeze_excite import squeeze_excite

__all__ = [
    "basic_block",
    "ccnn_block",
    "bottleneck_block",
    "conv2d",
    "conv_bn_act",
    "conv_ffn_block",
    "convnext_block",
    "inverted_residual_block",
    "replk_block",
    "shufflenet_v2_block",
    "squeeze_excite",
    "stem_downsample",
]
