"""keras_convzoo: modern convolutional networks for Keras 3 / TensorFlow.

Drop-in constructors with the keras.applications signature, layers for
grouped, squeeze-excite and inverted-residual convolutions, and export paths
to TFLite and ONNX that are verified against the Keras model.

Example:
>>> import keras_convzoo as kcz
>>> model = kcz.ResNeXt50(include_top=False, input_shape=(None, None, 3), pooling="avg")
>>> kcz.list_models("seresnet*")
"""

__version__ = "0.1.0"

from keras_convzoo import blocks, deploy, export, layers, ops, profile, quantization, weights  # noqa: F401
from keras_convzoo.applications import (  # noqa: F401
    CCNN,
    ConvNeXtBase,
    ConvNeXtLarge,
    ConvNeXtSmall,
    ConvNeXtTiny,
    ConvNeXtXLarge,
    MobileNetV2,
    ModelSpec,
    RepLKNet31B,
    RepLKNet31L,
    ResNeXt50,
    ResNeXt101,
    SEResNet18,
    SEResNet34,
    SEResNet50,
    SEResNet101,
    SEResNet152,
    SEResNeXt50,
    SEResNeXt101,
    ShuffleNetV2,
    create_model,
    decode_predictions,
    get_spec,
    list_models,
    preprocess_input,
    preprocessing_layers,
)
from keras_convzoo.backend import KERAS_NAME  # noqa: F401
from keras_convzoo.weights.pretrained import list_pretrained  # noqa: F401
