"""Shared stem and stages of the ResNet families (ResNeXt, SE-ResNet, SE-ResNeXt)."""

import dataclasses
import re
from typing import Optional, Tuple

from keras_convzoo.applications._registry import config_field
from keras_convzoo.blocks.conv import DOWNSAMPLE_MODES, conv_bn_act, stem_downsample
from keras_convzoo.blocks.residual import basic_block, bottleneck_block
from keras_convzoo.weights.formats import KeyMap, WeightFormat

RESNET_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
RESNEXT_PAPER = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017"
SENET_PAPER = "Hu et al., Squeeze-and-Excitation Networks, CVPR 2018"

#: Values of the ``block`` config field.
BLOCK_TYPES = ("basic", "bottleneck")


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Architecture of a torchvision/timm-layout ResNet (v1.5: stride in the 3x3).

    Attributes:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"``.
        depths: blocks per stage, each >= 1 (a stage of 0 blocks would
            leave a stem-only model).
        widths: ``planes`` per stage (bottleneck output is 4x).
        cardinality: groups of the bottleneck 3x3 (ResNeXt).
        base_width: width per group at 64 planes (ResNeXt "d").
        stem_width: channels of the 7x7 stem.
        se_ratio: None, or the squeeze-excite reduction ratio (1/16).
        se_divisor: rounding multiple of the SE width (timm: 8).
        drop_rate: dropout before the classifier.
        zero_init_last: start each block's last BN scale at zero (timm).
        bn_epsilon, bn_momentum: batch norm settings (PyTorch's 1e-5, 0.1).
        downsample: ``"pool"`` (the 3x3 stride-2 max pool after the stem) or
            ``"conv"`` (an all-convolutional stem: a learned 3x3 stride-2
            conv + BN + ReLU with ``stem_width`` channels instead, layers
            ``stem_pool_conv``/``stem_pool_bn``/``stem_pool_relu``; adds
            ``9 * stem_width**2 + 2 * stem_width`` trainable parameters, e.g.
            36,992 for ResNeXt50, and the same output shapes). Measured with
            ``profile.count_flops`` at 224x224: ResNeXt50 4.230 GMACs with
            "pool", 4.346 GMACs with "conv" (+115.6M MACs, +2.7%).
    """

    block: str = config_field("bottleneck", choices=BLOCK_TYPES)
    depths: Tuple[int, ...] = config_field((3, 4, 6, 3), minimum=1)
    widths: Tuple[int, ...] = config_field((64, 128, 256, 512), minimum=1)
    cardinality: int = config_field(1, minimum=1)
    base_width: int = config_field(64, minimum=1)
    stem_width: int = config_field(64, minimum=1)
    se_ratio: Optional[float] = None
    se_divisor: int = config_field(8, minimum=1)
    drop_rate: float = 0.0
    zero_init_last: bool = True
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    downsample: str = config_field("pool", choices=DOWNSAMPLE_MODES)


#: Config overrides of every residual variant's tiny twin (fast CPU tests).
RESNET_TINY = {"depths": (2, 1, 1, 1), "widths": (8, 16, 32, 64), "stem_width": 16}


def residual_body(x, config):
    """Adds the 7x7 stem, the max pool (or strided conv) and the residual stages.

    Args:
        x: input tensor ``(batch, height, width, channels)``.
        config: a ``ResNetConfig``.

    Returns:
        ``(x, features)`` with features ``stem`` (stride 4 after pooling)
        and ``stage1`` .. ``stage4`` (strides 4, 8, 16, 32).
    """
    if config.block not in BLOCK_TYPES:
        raise ValueError(f"`block` must be one of {BLOCK_TYPES}. Received: block={config.block!r}")
    if not config.depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in config.depths):
        raise ValueError(f"`depths` must be a non-empty tuple of ints >= 1. Received: depths={config.depths!r}")
    if len(config.depths) != len(config.widths):
        raise ValueError(
            f"`depths` and `widths` must have the same length. Received: depths={config.depths}, "
            f"widths={config.widths}"
        )
    if config.block == "basic" and (config.cardinality != 1 or config.base_width != 64):
        raise ValueError(
            "The basic block supports cardinality=1 and base_width=64 only. Received: "
            f"cardinality={config.cardinality}, base_width={config.base_width}"
        )
    bn = dict(bn_epsilon=config.bn_epsilon, bn_momentum=config.bn_momentum)
    x = conv_bn_act(x, config.stem_width, 7, 2, name="stem", **bn)
    x = stem_downsample(x, config.downsample, name="stem_pool", **bn)
    features = {"stem": x}
    block_options = dict(
        se_ratio=config.se_ratio,
        se_divisor=config.se_divisor,
        zero_init_last=config.zero_init_last,
        **bn,
    )
    if config.block == "bottleneck":
        block_options.update(cardinality=config.cardinality, base_width=config.base_width)
    block_fn = bottleneck_block if config.block == "bottleneck" else basic_block
    for stage, (depth, planes) in enumerate(zip(config.depths, config.widths), start=1):
        for index in range(depth):
            strides = 2 if stage > 1 and index == 0 else 1
            x = block_fn(x, planes, strides, name=f"stage{stage}_block{index + 1}", **block_options)
        features[f"stage{stage}"] = x
    return x, features


_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(\w+)$")
_BLOCK_MODULES = {
    "downsample_conv": "downsample.0",
    "downsample_bn": "downsample.1",
    "se_fc1": "se.fc1",
    "se_fc2": "se.fc2",
}


def timm_module_name(name, layer_names):
    """timm/torchvision module of one of our residual layers (None if it has none).

    ``stem_conv``/``stem_bn`` -> ``conv1``/``bn1``;
    ``stage{S}_block{B}_conv{i}``/``_bn{i}`` -> ``layer{S}.{B-1}.conv{i}``/``bn{i}``;
    ``..._downsample_conv``/``_bn`` -> ``layer{S}.{B-1}.downsample.0``/``.1``;
    ``..._se_fc1``/``_fc2`` -> ``layer{S}.{B-1}.se.fc1``/``.fc2``; ``predictions`` -> ``fc``.
    """
    fixed = {"stem_conv": "conv1", "stem_bn": "bn1", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, block, part = int(match[1]), int(match[2]), match[3]
    prefix = f"layer{stage}.{block - 1}"
    if re.fullmatch(r"(conv|bn)\d", part):
        return f"{prefix}.{part}"
    return f"{prefix}.{_BLOCK_MODULES[part]}" if part in _BLOCK_MODULES else None


#: timm's (and torchvision's: same module names) state dicts of the residual families.
TIMM_FORMAT = WeightFormat(key_map=KeyMap(module_name=timm_module_name, head_prefixes=("fc.",)))
