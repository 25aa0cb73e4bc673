"""Loading weights into zoo models: our files, and state dicts of reference implementations."""

from keras_convzoo.weights.ccnn import port_ccnn
from keras_convzoo.weights.loading import (
    WeightsMismatchError,
    check_weights_path,
    imagenet_weights_path,
    load,
    weights_home,
)
from keras_convzoo.weights.state_dict import read_state_dict
from keras_convzoo.weights.timm import convert_timm_weights, port_timm

__all__ = [
    "WeightsMismatchError",
    "check_weights_path",
    "convert_timm_weights",
    "imagenet_weights_path",
    "load",
    "port_ccnn",
    "port_timm",
    "read_state_dict",
    "weights_home",
]
