"""RepLKNet-31B and RepLKNet-31L: 31x31 re-parameterised depthwise kernels."""

import dataclasses
from typing import Optional, Tuple

from keras_convzoo.applications._entrypoints import Variant, make_entrypoint, register_variants
from keras_convzoo.applications._registry import config_field
from keras_convzoo.blocks.conv import conv_bn_act
from keras_convzoo.blocks.replknet import conv_ffn_block, replk_block
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.ops.padding import PADDING_MODES

PAPER = "Ding et al., Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs, CVPR 2022"


@dataclasses.dataclass(frozen=True)
class RepLKNetConfig:
    """Architecture of RepLKNet (the official code's ``RepLKNet`` arguments).

    Attributes:
        depths: blocks per stage (one block = a RepLK block + a ConvFFN).
        channels: channels per stage.
        large_kernel_sizes: depthwise kernel size per stage.
        small_kernel: parallel small kernel of every large kernel, or None.
        dw_ratio: depthwise channels relative to the stage channels.
        ffn_ratio: ConvFFN hidden width relative to the stage channels.
        drop_path_rate: stochastic depth, linearly increased over blocks
            from 0 (the paper trains with 0.3 for 31B, 0.5 for 31L; the
            default 0 keeps inference and fine-tuning deterministic).
        deploy: build every large kernel in its merged inference form
            (``layers.ReparamLargeKernelConv(deploy=True)``), as the
            official ``small_kernel_merged=True``. ``deploy.fuse`` turns a
            trained model into this form and also folds the BNs.
        padding_mode: padding of the stride-2 3x3 convs: ``"torch"``
            (symmetric, as the official PyTorch code) or ``"keras"``.
    """

    depths: Tuple[int, ...] = config_field((2, 2, 18, 2), minimum=1)
    channels: Tuple[int, ...] = config_field((128, 256, 512, 1024), minimum=1)
    large_kernel_sizes: Tuple[int, ...] = config_field((31, 29, 27, 13), minimum=1)
    small_kernel: Optional[int] = 5
    dw_ratio: float = 1.0
    ffn_ratio: float = 4.0
    drop_path_rate: float = 0.0
    deploy: bool = False
    padding_mode: str = config_field("torch", choices=PADDING_MODES)


def _check(config):
    lengths = {len(config.depths), len(config.channels), len(config.large_kernel_sizes)}
    if len(lengths) != 1:
        raise ValueError(
            "`depths`, `channels` and `large_kernel_sizes` must have the same length. Received: "
            f"depths={config.depths}, channels={config.channels}, large_kernel_sizes={config.large_kernel_sizes}"
        )
    if not 0 <= config.drop_path_rate < 1:
        raise ValueError(f"`drop_path_rate` must be in [0, 1). Received: drop_path_rate={config.drop_path_rate}")
    if not isinstance(config.deploy, bool):
        raise ValueError(f"`deploy` must be a bool. Received: deploy={config.deploy!r}")


def replknet_body(x, config):
    """Adds the RepLKNet trunk: 4-conv stem (stride 4), stages, transitions, final BN.

    Stem: 3x3/2 conv, 3x3 depthwise, 1x1 conv, 3x3/2 depthwise (each + BN +
    ReLU; ``stem_conv1`` .. ``stem_conv4``). Stage ``s`` holds ``depths[s]``
    pairs of ``replk_block`` (``stage{s}_block{b}_replk_*``) and
    ``conv_ffn_block`` (``stage{s}_block{b}_ffn_*``); between stages a 1x1
    conv + BN + ReLU and a 3x3/2 depthwise conv + BN + ReLU
    (``stage{s}_transition_conv1/2``, at the start of stage ``s``). The
    official classifier normalises the last feature map with a BN before
    pooling; it is part of the trunk here (``final_bn``), so every output of
    the model (top, pooled or feature map) matches the official forward.

    Args:
        x: input tensor ``(batch, height, width, channels)``.
        config: a ``RepLKNetConfig``.

    Returns:
        ``(x, features)`` with ``stage1`` .. ``stage4`` (strides 4 to 32,
        before the final BN).
    """
    _check(config)
    mode = config.padding_mode
    width = config.channels[0]
    x = conv_bn_act(x, width, 3, strides=2, padding_mode=mode, name="stem", suffixes=("conv1", "bn1", "relu1"))
    x = conv_bn_act(x, width, 3, groups=width, name="stem", suffixes=("conv2", "bn2", "relu2"))
    x = conv_bn_act(x, width, 1, name="stem", suffixes=("conv3", "bn3", "relu3"))
    x = conv_bn_act(
        x, width, 3, strides=2, groups=width, padding_mode=mode, name="stem", suffixes=("conv4", "bn4", "relu4")
    )
    total = sum(config.depths)
    rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    features = {}
    index = 0
    for stage, (depth, channels, kernel) in enumerate(
        zip(config.depths, config.channels, config.large_kernel_sizes), start=1
    ):
        if stage > 1:
            prefix = f"stage{stage}_transition"
            x = conv_bn_act(x, channels, 1, name=prefix, suffixes=("conv1", "bn1", "relu1"))
            x = conv_bn_act(
                x, channels, 3, strides=2, groups=channels, padding_mode=mode,
                name=prefix, suffixes=("conv2", "bn2", "relu2"),
            )
        for block in range(depth):
            prefix = f"stage{stage}_block{block + 1}"
            x = replk_block(
                x,
                kernel_size=kernel,
                small_kernel=config.small_kernel,
                dw_ratio=config.dw_ratio,
                drop_path_rate=rates[index],
                deploy=config.deploy,
                name=f"{prefix}_replk",
            )
            x = conv_ffn_block(x, config.ffn_ratio, rates[index], name=f"{prefix}_ffn")
            index += 1
        features[f"stage{stage}"] = x
    x = BatchNormalization(epsilon=1e-5, momentum=0.9, name="final_bn")(x)
    return x, features


#: Trainable parameters of the official code.
VARIANTS = (
    Variant("replknet31_base", "RepLKNet31B", {"channels": (128, 256, 512, 1024)}, 79_864_168),
    Variant("replknet31_large", "RepLKNet31L", {"channels": (192, 384, 768, 1536)}, 172_671_016),
)
_TINY = {"depths": (1, 1, 2, 1), "channels": (8, 16, 24, 32), "large_kernel_sizes": (7, 7, 5, 3), "small_kernel": 3}

SPECS = register_variants(
    VARIANTS,
    RepLKNetConfig,
    family="replknet",
    body=replknet_body,
    reference="official DingXiaoH/RepLKNet-pytorch create_RepLKNet31B/L, counted with torch",
    paper=PAPER,
    test_overrides=_TINY,
    preprocessing="torch",  # the official training's ImageNet mean/std (timm transforms)
)

_DOC = """Instantiates {entry}: {params:.1f}M parameters (official ``create_{entry}``).

    Published configuration: stage channels {config.channels}, depths (2, 2, 18, 2),
    large kernels 31/29/27/13 with a parallel 5x5 branch, FFN ratio 4.
    Layer order and PyTorch's symmetric padding follow the official code.
    ``deploy=True`` builds the merged inference form of every large kernel;
    ``keras_convzoo.deploy.fuse(model)`` converts a trained model to it and
    folds every conv -> BN pair. The official classifier's BN over the last
    feature map is part of the trunk (``final_bn``): ``include_top=False``
    returns normalised features, as the official forward before pooling.
"""
_EXAMPLE = """>>> model = {entry}(include_top=False, input_shape=(None, None, 3), pooling="avg")"""

RepLKNet31B, RepLKNet31L = (
    make_entrypoint(variant.entrypoint, VARIANTS, __name__, doc=_DOC, example=_EXAMPLE) for variant in VARIANTS
)
