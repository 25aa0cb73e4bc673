"""Pure functions shared by layers, blocks and applications (one copy each)."""

from keras_convzoo.ops.batch_norm import bn_inference_affine
from keras_convzoo.ops.divisible import make_divisible, se_channels
from keras_convzoo.ops.padding import same_padding_amounts

__all__ = ["bn_inference_affine", "make_divisible", "same_padding_amounts", "se_channels"]
