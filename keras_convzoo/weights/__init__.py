"""Loading weights into zoo models: our files, and state dicts of reference implementations."""

from keras_convzoo.weights.ccnn import port_ccnn
from keras_convzoo.weights.loading import WeightsMismatchError, check_weights_path, load
from keras_convzoo.weights.state_dict import read_state_dict

__all__ = ["WeightsMismatchError", "check_weights_path", "load", "port_ccnn", "read_state_dict"]
