"""Applications: keras.applications-style constructors and the model registry.

Every constructor is made by one function (``_entrypoints.make_entrypoint``)
from its family's table of ``Variant`` rows: keras.applications' arguments
in keras.applications' order (ResNet50's, or MobileNetV2's with
``input_shape`` first), the family's variant selector where it has one
(``MobileNetV2(alpha=)``, ``ShuffleNetV2(width_multiplier=)``,
``CCNN(depth=, width=, kernel_hidden=)``), then keyword overrides of the
family config (``create_model(name, **overrides)`` takes the same ones).

Stage widths keep each family's upstream name, so that a config reads as
the upstream constructor it was ported from; the entries also differ in
what they count:

| Family | Config field | Upstream argument | What it holds |
|---|---|---|---|
| ResNeXt, SE-ResNet, SE-ResNeXt | ``widths`` | timm ``ResNet(channels=)`` | planes per stage (a bottleneck outputs 4x) |
| ConvNeXt | ``dims`` | timm ``ConvNeXt(dims=)`` | channels per stage |
| RepLKNet | ``channels`` | official ``RepLKNet(channels=)`` | channels per stage |
| ShuffleNetV2 | ``stage_out_channels`` | torchvision ``ShuffleNetV2(stages_out_channels=)`` | stem, each stage, then conv5: ``len(stage_repeats) + 2`` entries |
| MobileNetV2 | ``block_settings`` (column c) and ``alpha`` | the paper's Table 2 (t, c, n, s) | output channels per row, before ``alpha`` |
| CCNN | ``width`` | official ``net.no_hidden`` | one width for every block |

Blocks per stage are ``depths`` (timm ``layers`` / ``depths``), except
ShuffleNetV2's ``stage_repeats`` (torchvision ``stages_repeats``) and CCNN's
``depth`` (official ``net.no_blocks``).
"""

from keras_convzoo.applications._builder import build_application, create_model
from keras_convzoo.applications._registry import (
    ModelSpec,
    get_spec,
    list_models,
    register,
)
from keras_convzoo.applications.ccnn import CCNN, port_ccnn
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
from keras_convzoo.applications.porting import convert_timm_weights, port_timm
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
    "convert_timm_weights",
    "port_ccnn",
    "create_feature_extractor",
    "create_model",
    "FeatureInfo",
    "decode_predictions",
    "get_spec",
    "list_models",
    "port_timm",
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
