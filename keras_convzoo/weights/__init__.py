"""Loading weights into zoo models (timm porting comes with the weights issue)."""

from keras_convzoo.weights.loading import WeightsMismatchError, check_weights_path, load

__all__ = ["WeightsMismatchError", "check_weights_path", "load"]
