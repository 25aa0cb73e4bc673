"""ShuffleNetV2 with torchvision's exact layout (``shufflenet_v2_x0_5`` .. ``x2_0``)."""

import dataclasses
import re
from typing import Tuple

from keras_convzoo.applications._entrypoints import Selector, Variant, make_entrypoint, register_variants
from keras_convzoo.applications._registry import config_field
from keras_convzoo.blocks.conv import DOWNSAMPLE_MODES, stem_downsample
from keras_convzoo.blocks.conv import conv_bn_act
from keras_convzoo.blocks.shuffle import shufflenet_v2_block
from keras_convzoo.ops.padding import PADDING_MODES
from keras_convzoo.weights.formats import KeyMap, WeightFormat

PAPER = (
    "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018"
)

#: Blocks of stages 2, 3 and 4 (the first of each has stride 2).
STAGE_REPEATS = (4, 8, 4)

#: One variant per width multiplier, under torchvision's names: the channels of the stem, of stages 2-4
#: and of conv5 (torchvision's ``stages_out_channels``), trainable parameters of torchvision's models
#: (torchvision 0.29).
VARIANTS = (
    Variant("shufflenet_v2_x0_5", "ShuffleNetV2", {"stage_out_channels": (24, 48, 96, 192, 1024)}, 1_366_792,
            selector=(0.5,)),
    Variant("shufflenet_v2_x1_0", "ShuffleNetV2", {"stage_out_channels": (24, 116, 232, 464, 1024)}, 2_278_604,
            selector=(1.0,)),
    Variant("shufflenet_v2_x1_5", "ShuffleNetV2", {"stage_out_channels": (24, 176, 352, 704, 1024)}, 3_503_624,
            selector=(1.5,)),
    Variant("shufflenet_v2_x2_0", "ShuffleNetV2", {"stage_out_channels": (24, 244, 488, 976, 2048)}, 7_393_996,
            selector=(2.0,)),
)

_TINY = {"stage_repeats": (2, 1, 1), "stage_out_channels": (8, 16, 32, 48, 64)}


@dataclasses.dataclass(frozen=True)
class ShuffleNetV2Config:
    """Architecture of ShuffleNetV2 (torchvision layout).

    Attributes:
        stage_repeats: blocks of stages 2, 3, 4.
        stage_out_channels: channels of the stem, of each stage (even) and
            of the final 1x1 conv (``conv5``, here ``head_conv``).
        downsample: ``"pool"`` (the stem's 3x3 stride-2 max pool) or
            ``"conv"`` (a learned 3x3 stride-2 conv + BN + ReLU with the stem's
            channels: ``stem_pool_conv``/``stem_pool_bn``/``stem_pool_relu``,
            5,232 more trainable parameters with a 24-channel stem).
        padding_mode: padding of the strided convolutions: ``"torch"``
            (symmetric, as torchvision; default) or ``"keras"``/``"same"``.
        bn_epsilon, bn_momentum: PyTorch's 1e-5 and 0.1 (Keras momentum 0.9).
        drop_rate: dropout before the classifier (torchvision: none).
    """

    stage_repeats: Tuple[int, ...] = config_field(STAGE_REPEATS, minimum=1)
    stage_out_channels: Tuple[int, ...] = config_field((24, 116, 232, 464, 1024), minimum=1)  # x1_0
    downsample: str = config_field("pool", choices=DOWNSAMPLE_MODES)
    padding_mode: str = config_field("torch", choices=PADDING_MODES)
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    drop_rate: float = 0.0


def _check_config(config):
    repeats, channels = tuple(config.stage_repeats), tuple(config.stage_out_channels)
    if not repeats or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in repeats):
        raise ValueError(
            f"`stage_repeats` must be positive ints. Received: stage_repeats={config.stage_repeats!r}"
        )
    if len(channels) != len(repeats) + 2 or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
    ):
        raise ValueError(
            "`stage_out_channels` must hold len(stage_repeats) + 2 positive ints (stem, each "
            f"stage, conv5). Received: stage_out_channels={config.stage_out_channels!r}, "
            f"stage_repeats={config.stage_repeats!r}"
        )
    if any(c % 2 for c in channels[1:-1]):
        raise ValueError(
            "Stage channels must be even (each block concatenates two halves). Received: "
            f"stage_out_channels={config.stage_out_channels!r}"
        )
    if config.downsample not in DOWNSAMPLE_MODES:
        raise ValueError(
            f"`downsample` must be one of {DOWNSAMPLE_MODES}. Received: downsample={config.downsample!r}"
        )
    if config.padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of {PADDING_MODES}. Received: padding_mode={config.padding_mode!r}"
        )


def shufflenet_v2_body(x, config):
    """Adds the ShuffleNetV2 trunk: stem, stages 2-4, final 1x1 conv.

    Layers: ``stem_conv``/``stem_bn``/``stem_relu`` (3x3 stride 2),
    ``stem_pool`` (3x3 stride-2 max pool, or ``stem_pool_conv``... with
    ``downsample="conv"``), ``stage{2,3,4}_block{i}_...`` (see
    ``blocks.shufflenet_v2_block``), ``head_conv``/``head_bn``/``head_relu``
    (torchvision's ``conv5``).

    Args:
        x: input tensor ``(batch, height, width, channels)``.
        config: a ``ShuffleNetV2Config``.

    Returns:
        ``(x, features)`` with ``stem`` (stride 4), ``stage2`` .. ``stage4``
        (strides 8, 16, 32) and ``head``.
    """
    _check_config(config)
    channels = tuple(config.stage_out_channels)
    common = dict(bn_epsilon=config.bn_epsilon, bn_momentum=config.bn_momentum)
    x = conv_bn_act(x, channels[0], 3, 2, padding_mode=config.padding_mode, name="stem", **common)
    x = stem_downsample(
        x, config.downsample, padding_mode=config.padding_mode, name="stem_pool", **common
    )
    features = {"stem": x}
    for index, (repeats, filters) in enumerate(zip(config.stage_repeats, channels[1:-1])):
        stage = f"stage{index + 2}"
        for block in range(repeats):
            x = shufflenet_v2_block(
                x,
                filters,
                strides=2 if block == 0 else 1,
                padding_mode=config.padding_mode,
                name=f"{stage}_block{block + 1}",
                **common,
            )
        features[stage] = x
    x = conv_bn_act(x, channels[-1], 1, name="head", **common)
    features["head"] = x
    return x, features


_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(branch[12])_(\w+)$")

#: Our branch layer suffix -> index in torchvision's ``InvertedResidual.branch1`` / ``branch2``
#: ``nn.Sequential`` (the ReLUs, ``branch2.2`` and ``.7``, ``branch1.4``, hold no weights).
_BRANCH_MODULES = {
    "branch1": {"dw_conv": 0, "dw_bn": 1, "pw_conv": 2, "pw_bn": 3},
    "branch2": {"pw1_conv": 0, "pw1_bn": 1, "dw_conv": 3, "dw_bn": 4, "pw2_conv": 5, "pw2_bn": 6},
}

#: Layers outside the stages -> torchvision module.
_TOP_MODULES = {
    "stem_conv": "conv1.0",
    "stem_bn": "conv1.1",
    "head_conv": "conv5.0",
    "head_bn": "conv5.1",
    "predictions": "fc",
}


def torchvision_module_name(name, layer_names):
    """torchvision ``shufflenet_v2_x*`` module of one of our ShuffleNetV2 layers (None if it has none).

    ``stem_conv``/``stem_bn`` -> ``conv1.0``/``conv1.1``;
    ``stage{S}_block{B}_branch1_dw_conv``/``_dw_bn``/``_pw_conv``/``_pw_bn`` -> ``stage{S}.{B-1}.branch1.0`` .. ``.3``;
    ``stage{S}_block{B}_branch2_pw1_conv``/``_pw1_bn`` -> ``stage{S}.{B-1}.branch2.0``/``.1``;
    ``stage{S}_block{B}_branch2_dw_conv``/``_dw_bn`` -> ``stage{S}.{B-1}.branch2.3``/``.4``;
    ``stage{S}_block{B}_branch2_pw2_conv``/``_pw2_bn`` -> ``stage{S}.{B-1}.branch2.5``/``.6``;
    ``head_conv``/``head_bn`` -> ``conv5.0``/``conv5.1``; ``predictions`` -> ``fc``;
    anything else (``stem_pool_conv`` of ``downsample="conv"``, weightless layers) -> None.

    Args:
        name: one of our layer names, e.g. ``"stage2_block1_branch2_dw_bn"``.
        layer_names: the model's layer names (unused: the mapping is by name only).

    Returns:
        The module prefix in the state dict (``"stage2.0.branch2.4"``), or None.

    Example:
    >>> torchvision_module_name("stage3_block2_branch2_pw2_conv", frozenset())
    'stage3.1.branch2.5'
    """
    del layer_names  # the mapping depends on the name alone
    if name in _TOP_MODULES:
        return _TOP_MODULES[name]
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, block, branch, part = match[1], int(match[2]), match[3], match[4]
    index = _BRANCH_MODULES[branch].get(part)
    return None if index is None else f"stage{stage}.{block - 1}.{branch}.{index}"


#: torchvision's ``shufflenet_v2_x*`` state dicts. The default config already computes what torchvision's
#: model does (symmetric padding of the strided convs, BN epsilon 1e-5, the 3x3 max pool), so no override.
TORCHVISION_FORMAT = WeightFormat(key_map=KeyMap(module_name=torchvision_module_name, head_prefixes=("fc.",)))


SPECS = register_variants(
    VARIANTS,
    ShuffleNetV2Config,
    lambda variant, config: {"reference": f"torchvision {variant.name} (trainable)"},
    family="shufflenetv2",
    body=shufflenet_v2_body,
    paper=PAPER,
    test_overrides=_TINY,
    preprocessing="torch",  # torchvision's ImageNet mean/std
    weight_formats={"torchvision": TORCHVISION_FORMAT},
)

ShuffleNetV2 = make_entrypoint(
    "ShuffleNetV2",
    VARIANTS,
    __name__,
    selector=Selector(("width_multiplier",), ("channel width multiplier",), (1.0,)),
    doc="""Instantiates ShuffleNetV2, layer for layer torchvision's ``shufflenet_v2_x*``.

    Stem conv 3x3 stride 2 (24 channels) + BN + ReLU and a 3x3 stride-2 max
    pool, three stages of ShuffleNetV2 units (channel split, 1x1 / depthwise
    3x3 / 1x1 branch, concat, channel shuffle; the first unit of a stage has
    stride 2 and two branches), a 1x1 conv + BN + ReLU, global average
    pooling and the classifier. PyTorch's symmetric padding and BN epsilon
    1e-5, so torchvision weights port one to one: ``weights="x.pth"``
    (``TORCHVISION_FORMAT``, checked by ``tools/check_shufflenet_torchvision.py``
    and ``tests/applications/test_shufflenet_v2.py``).

    Trainable parameters (equal to torchvision's): 1,366,792 (0.5),
    2,278,604 (1.0), 3,503,624 (1.5), 7,393,996 (2.0).
    """,
    notes={
        "weights": """A torchvision ``shufflenet_v2_x*`` state dict must be of the same width (``.pth`` as
            ``torch.save(model.state_dict())`` writes it); it is ported by ``torchvision_module_name``.""",
        "kwargs": """E.g. ``downsample="conv"`` (all-convolutional stem) or ``drop_rate``.""",
    },
    example=""">>> model = ShuffleNetV2(0.5, include_top=False, input_shape=(None, None, 3), pooling="avg")""",
)
