"""MobileNetV2 with keras.applications' exact architecture, layer for layer."""

import dataclasses
from typing import Tuple

from keras_convzoo.applications._entrypoints import (
    MOBILENET_V2_ORDER,
    Selector,
    Variant,
    make_entrypoint,
    register_variants,
)
from keras_convzoo.applications._registry import config_field
from keras_convzoo.backend import keras
from keras_convzoo.blocks.conv import conv_bn_act
from keras_convzoo.blocks.inverted_residual import inverted_residual_block
from keras_convzoo.ops.divisible import make_divisible
from keras_convzoo.weights.formats import KeyMap, WeightFormat

PAPER = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018"

#: (expansion t, channels c, repeats n, stride s) of the paper's Table 2.
BLOCK_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclasses.dataclass(frozen=True)
class MobileNetV2Config:
    """Architecture of MobileNetV2.

    Attributes:
        alpha: width multiplier.
        block_settings: rows (t, c, n, s) of the paper's Table 2, every
            entry >= 1 (a row with n = 0 repeats would add no stage).
        stem_filters: stem channels before ``alpha``.
        head_filters: channels of the last 1x1 conv (scaled only if alpha > 1).
        padding_mode: ``"keras"`` (keras.applications: TF "same" stem,
            correct_pad before strided depthwise convs) or ``"torch"``
            (symmetric, as timm/torchvision; for ported PyTorch weights).
        bn_epsilon, bn_momentum: keras.applications' 1e-3 and 0.999.
        drop_rate: dropout before the classifier.
    """

    alpha: float = 1.0
    block_settings: Tuple[Tuple[int, int, int, int], ...] = config_field(BLOCK_SETTINGS, minimum=1)
    stem_filters: int = config_field(32, minimum=1)
    head_filters: int = config_field(1280, minimum=1)
    padding_mode: str = config_field("keras", choices=("keras", "torch"))
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.999
    drop_rate: float = 0.0


def mobilenet_v2_body(x, config):
    """Adds the MobileNetV2 trunk.

    Args:
        x: input tensor ``(batch, height, width, channels)``.
        config: a ``MobileNetV2Config``.

    Returns:
        ``(x, features)`` with ``stem`` and ``stage1`` .. ``stage7`` (one per
        row of the block table) and ``head``.
    """
    alpha = config.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"`alpha` must be a positive number. Received: alpha={alpha!r}")
    if config.padding_mode not in ("keras", "torch"):
        raise ValueError(
            f"`padding_mode` must be 'keras' or 'torch'. Received: padding_mode={config.padding_mode!r}"
        )
    bn = dict(bn_epsilon=config.bn_epsilon, bn_momentum=config.bn_momentum)
    stem_padding = "same" if config.padding_mode == "keras" else "torch"
    x = conv_bn_act(
        x,
        make_divisible(config.stem_filters * alpha, 8),
        3,
        2,
        activation="relu6",
        padding_mode=stem_padding,
        name="stem",
        **bn,
    )
    features = {"stem": x}
    for stage, (t, c, n, s) in enumerate(config.block_settings, start=1):
        filters = make_divisible(int(c * alpha), 8)
        for index in range(n):
            x = inverted_residual_block(
                x,
                filters,
                strides=s if index == 0 else 1,
                expansion=t,
                padding_mode=config.padding_mode,
                name=f"stage{stage}_block{index + 1}",
                **bn,
            )
        features[f"stage{stage}"] = x
    head = make_divisible(config.head_filters * alpha, 8) if alpha > 1.0 else config.head_filters
    x = conv_bn_act(
        x, head, 1, activation="relu6", name="head", **bn
    )
    features["head"] = x
    return x, features


#: One variant per alpha, under timm's names (timm has no 1.3); trainable parameters of
#: keras.applications.MobileNetV2 (= timm's where it exists).
VARIANTS = tuple(
    Variant(name, "MobileNetV2", {"alpha": alpha}, params, selector=(alpha,))
    for alpha, name, params in (
        (0.35, "mobilenetv2_035", 1_677_128),
        (0.5, "mobilenetv2_050", 1_968_680),
        (0.75, "mobilenetv2_075", 2_636_424),
        (1.0, "mobilenetv2_100", 3_504_872),
        (1.3, "mobilenetv2_130", 5_386_792),
        (1.4, "mobilenetv2_140", 6_108_776),
    )
)
#: What makes the architecture compute timm's MobileNetV2: PyTorch's symmetric padding and BN epsilon.
TIMM_CONFIG = {"padding_mode": "torch", "bn_epsilon": 1e-5}
_TIMM_FIXED = {"stem_conv": "conv_stem", "stem_bn": "bn1", "head_conv": "conv_head", "head_bn": "bn2",
               "predictions": "classifier"}
#: Our block layers -> timm's InvertedResidual modules.
_TIMM_INVERTED = {"expand_conv": "conv_pw", "expand_bn": "bn1", "dw_conv": "conv_dw", "dw_bn": "bn2",
                  "project_conv": "conv_pwl", "project_bn": "bn3"}
#: Our first block (no expansion) -> timm's DepthwiseSeparableConv.
_TIMM_SEPARABLE = {"dw_conv": "conv_dw", "dw_bn": "bn1", "project_conv": "conv_pw", "project_bn": "bn2"}


def timm_module_name(name, layer_names):
    """timm module of one of our MobileNetV2 layers (None if it has none).

    ``stem_conv``/``stem_bn`` -> ``conv_stem``/``bn1``; blocks
    ``stage{S}_block{B}`` -> ``blocks.{S-1}.{B-1}``: ``expand_conv``/``_bn`` ->
    ``conv_pw``/``bn1``, ``dw_conv``/``_bn`` -> ``conv_dw``/``bn2``,
    ``project_conv``/``_bn`` -> ``conv_pwl``/``bn3``; in a block without
    expansion (timm's depthwise-separable block) ``dw_conv``/``_bn`` ->
    ``conv_dw``/``bn1`` and ``project_conv``/``_bn`` -> ``conv_pw``/``bn2``;
    ``head_conv``/``head_bn`` -> ``conv_head``/``bn2``; ``predictions`` -> ``classifier``.
    """
    if name in _TIMM_FIXED:
        return _TIMM_FIXED[name]
    parts = name.split("_", 2)
    if len(parts) != 3 or not parts[0].startswith("stage") or not parts[1].startswith("block"):
        return None
    stage, block, part = parts[0][len("stage"):], parts[1][len("block"):], parts[2]
    if not (stage.isdigit() and block.isdigit()):
        return None
    expands = f"stage{stage}_block{block}_expand_conv" in layer_names
    table = _TIMM_INVERTED if expands else _TIMM_SEPARABLE
    return f"blocks.{int(stage) - 1}.{int(block) - 1}.{table[part]}" if part in table else None


def keras_reference(spec, classes):
    """keras.applications' MobileNetV2 of the variant's alpha, whose ``.h5`` files we load."""
    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=spec.config.alpha, weights=None, classes=classes,
        classifier_activation=None,
    )


#: keras.applications' files: same architecture and layout, -1..1 inputs.
KERAS_FORMAT = WeightFormat(keras_reference=keras_reference, preprocessing="tf")
TIMM_FORMAT = WeightFormat(
    config=TIMM_CONFIG, key_map=KeyMap(module_name=timm_module_name, head_prefixes=("classifier.",))
)
_TINY = {
    "block_settings": ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 1, 2), (6, 24, 1, 2),
                       (6, 32, 1, 1), (6, 40, 1, 2), (6, 48, 1, 1)),
    "head_filters": 64,
}


def _sources(variant, config):
    """keras.applications has all six alphas, timm all but 1.3."""
    timm = config.alpha != 1.3
    return {"timm_name": variant.name if timm else None,
            "weight_formats": {"keras": KERAS_FORMAT, **({"timm": TIMM_FORMAT} if timm else {})}}


SPECS = register_variants(
    VARIANTS,
    MobileNetV2Config,
    _sources,
    family="mobilenetv2",
    body=mobilenet_v2_body,
    reference="keras.applications.MobileNetV2 (trainable)",
    paper=PAPER,
    test_overrides=_TINY,
    preprocessing="tf",
)

MobileNetV2 = make_entrypoint(
    "MobileNetV2",
    VARIANTS,
    __name__,
    order=MOBILENET_V2_ORDER,
    selector=Selector(("alpha",), ("width multiplier",), (1.0,), after="input_shape"),
    doc="""Instantiates MobileNetV2, layer for layer the keras.applications architecture.

    Same signature and argument order as ``keras.applications.MobileNetV2``
    (``input_shape`` first); with weights copied across the outputs are
    identical. Parameters: 3,538,984 at ``alpha=1.0`` (3,504,872 trainable).
    """,
    notes={
        "weights": """``"imagenet"`` is keras.applications' own file for the alpha (outputs equal
            ``keras.applications.MobileNetV2``'s, "tf" scaling); with timm weights (a tag such as ``"ra_in1k"``
            or a checkpoint) ``preprocess_input(x, model)`` applies timm's mean/std.""",
    },
    example=""">>> model = MobileNetV2(input_shape=(None, None, 3), alpha=0.5, include_top=False)""",
)
