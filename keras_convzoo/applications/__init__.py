"""Applications: keras.applications-style constructors and the model registry."""

from keras_convzoo.applications._builder import build_application, create_model
from keras_convzoo.applications._registry import (
    ModelSpec,
    get_spec,
    list_models,
    register,
)
from keras_convzoo.applications.ccnn import CCNN
from keras_convzoo.applications.features import FeatureInfo, create_feature_extractor
from keras_convzoo.applications.imagenet_utils import decode_predictions, preprocess_input, preprocessing_layers
from keras_convzoo.applications.convnext import (
    ConvNeXtBase,
    ConvNeXtLarge,
    ConvNeXtSmall,
    ConvNeXtTiny,
    ConvNeXtXLarge,
)
from keras_convzoo.applications.mobilenet_v2 import MobileNetV2
from keras_convzoo.applications.replknet import RepLKNet31B, RepLKNet31L
from keras_convzoo.applications.resnext import ResNeXt50, ResNeXt101
from keras_convzoo.applications.se_resnet import (
    SEResNet18,
    SEResNet34,
    SEResNet50,
    SEResNet101,
    SEResNet152,
    SEResNeXt50,
    SEResNeXt101,
)
from keras_convzoo.applications.shufflenet_v2 import ShuffleNetV2

__all__ = [
    "ModelSpec",
    "build_application",
    "create_feature_extractor",
    "create_model",
    "FeatureInfo",
    "decode_predictions",
    "get_spec",
    "list_models",
    "preprocess_input",
    "preprocessing_layers",
    "register",
    "CCNN",
    "ConvNeXtBase",
    "ConvNeXtLarge",
    "ConvNeXtSmall",
    "ConvNeXtTiny",
    "ConvNeXtXLarge",
    "MobileNetV2",
    "RepLKNet31B",
    "RepLKNet31L",
    "ResNeXt50",
    "ResNeXt101",
    "SEResNet18",
    "SEResNet34",
    "SEResNet50",
    "SEResNet101",
    "SEResNet152",
    "SEResNeXt50",
    "SEResNeXt101",
    "ShuffleNetV2",
]
