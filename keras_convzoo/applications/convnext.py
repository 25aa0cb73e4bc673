"""ConvNeXt Tiny/Small/Base/Large/XLarge (timm / keras.applications layout)."""

import dataclasses
from typing import Tuple

from keras_convzoo.applications._entrypoints import Variant, make_entrypoint, register_variants
from keras_convzoo.applications._registry import config_field
from keras_convzoo.applications.imagenet_utils import IMAGENET_MEAN, IMAGENET_STD
from keras_convzoo.backend import keras
from keras_convzoo.blocks.convnext import convnext_block
from keras_convzoo.layers.layer_normalization import layer_normalization_layer
from keras_convzoo.weights.formats import KeyMap, WeightFormat

PAPER = "Liu et al., A ConvNet for the 2020s, CVPR 2022"


@dataclasses.dataclass(frozen=True)
class ConvNeXtConfig:
    """Architecture of ConvNeXt.

    Attributes:
        depths: blocks per stage, each >= 1.
        dims: channels per stage.
        kernel_size: depthwise kernel size.
        mlp_ratio: MLP expansion.
        layer_scale_init_value: initial layer scale.
        drop_path_rate: stochastic depth rate, linearly increased over blocks
            from 0 to this value (as in the paper and keras.applications).
        drop_rate: dropout before the classifier.
        norm_epsilon: LayerNorm epsilon.
        include_preprocessing: add keras.applications' input ``Normalization``
            (ImageNet mean/std on 0-255 inputs). Default False: inputs are
            expected normalised already (the timm convention); pass True for
            keras.applications' behaviour.
    """

    depths: Tuple[int, ...] = config_field((3, 3, 9, 3), minimum=1)
    dims: Tuple[int, ...] = config_field((96, 192, 384, 768), minimum=1)
    kernel_size: int = config_field(7, minimum=1)
    mlp_ratio: int = config_field(4, minimum=1)
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float = 0.0
    drop_rate: float = 0.0
    norm_epsilon: float = 1e-6
    include_preprocessing: bool = False


def convnext_body(x, config):
    """Adds the ConvNeXt trunk: patchify stem, four stages with LN + 2x2 downsampling.

    Args:
        x: input tensor ``(batch, height, width, channels)``.
        config: a ``ConvNeXtConfig``.

    Returns:
        ``(x, features)`` with ``stage1`` .. ``stage4`` (strides 4 to 32).
    """
    if len(config.depths) != len(config.dims):
        raise ValueError(
            f"`depths` and `dims` must have the same length. Received: depths={config.depths}, dims={config.dims}"
        )
    if not config.depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in config.depths):
        raise ValueError(f"`depths` must be a non-empty tuple of ints >= 1. Received: depths={config.depths!r}")
    if not 0 <= config.drop_path_rate < 1:
        raise ValueError(f"`drop_path_rate` must be in [0, 1). Received: drop_path_rate={config.drop_path_rate}")
    eps = config.norm_epsilon
    if config.include_preprocessing:
        x = keras.layers.Normalization(
            mean=[m * 255 for m in IMAGENET_MEAN],
            variance=[(s * 255) ** 2 for s in IMAGENET_STD],
            name="preprocessing",
        )(x)
    x = keras.layers.Conv2D(config.dims[0], 4, strides=4, name="stem_conv")(x)
    x = layer_normalization_layer(epsilon=eps, name="stem_norm")(x)
    total = sum(config.depths)
    rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    features = {}
    index = 0
    for stage, (depth, dim) in enumerate(zip(config.depths, config.dims), start=1):
        if stage > 1:
            x = layer_normalization_layer(epsilon=eps, name=f"stage{stage}_downsample_norm")(x)
            x = keras.layers.Conv2D(dim, 2, strides=2, name=f"stage{stage}_downsample_conv")(x)
        for block in range(depth):
            x = convnext_block(
                x,
                kernel_size=config.kernel_size,
                mlp_ratio=config.mlp_ratio,
                layer_scale_init_value=config.layer_scale_init_value,
                drop_path_rate=rates[index],
                norm_epsilon=eps,
                name=f"stage{stage}_block{block + 1}",
            )
            index += 1
        features[f"stage{stage}"] = x
    return x, features


def convnext_head(x, config):
    """LayerNorm applied to the pooled features (before the classifier)."""
    return keras.layers.LayerNormalization(epsilon=config.norm_epsilon, name="head_norm")(x)


_TIMM_FIXED = {"stem_conv": "stem.0", "stem_norm": "stem.1", "head_norm": "head.norm", "predictions": "head.fc"}
_TIMM_BLOCK = {"dw_conv": ".conv_dw", "norm": ".norm", "pw_conv1": ".mlp.fc1", "pw_conv2": ".mlp.fc2",
               "layer_scale": ""}


def timm_module_name(name, layer_names):
    """timm module of one of our ConvNeXt layers (None if it has none).

    ``stem_conv``/``stem_norm`` -> ``stem.0``/``stem.1``;
    ``stage{S}_downsample_norm``/``_conv`` -> ``stages.{S-1}.downsample.0``/``.1``;
    ``stage{S}_block{B}_dw_conv``/``_norm``/``_pw_conv1``/``_pw_conv2``/``_layer_scale``
    -> ``stages.{S-1}.blocks.{B-1}.conv_dw``/``norm``/``mlp.fc1``/``mlp.fc2``/``gamma``;
    ``head_norm`` -> ``head.norm``; ``predictions`` -> ``head.fc``.
    """
    if name in _TIMM_FIXED:
        return _TIMM_FIXED[name]
    parts = name.split("_", 2)
    if len(parts) < 3 or not parts[0].startswith("stage") or not parts[0][len("stage"):].isdigit():
        return None
    stage = int(parts[0][len("stage"):])
    if parts[1] == "downsample" and parts[2] in ("norm", "conv"):
        return f"stages.{stage - 1}.downsample.{0 if parts[2] == 'norm' else 1}"
    block = parts[1][len("block"):]
    if not parts[1].startswith("block") or not block.isdigit() or parts[2] not in _TIMM_BLOCK:
        return None
    return f"stages.{stage - 1}.blocks.{int(block) - 1}{_TIMM_BLOCK[parts[2]]}"


def keras_reference(spec, classes):
    """keras.applications' ConvNeXt of the variant (input normalisation inside), whose ``.h5`` files we load."""
    return getattr(keras.applications, spec.entrypoint)(
        weights=None, include_preprocessing=True, classes=classes, classifier_activation=None,
        input_shape=(224, 224, 3),
    )


def keras_convert(path, array):
    """keras.applications' depthwise kernels are ``(k, k, 1, C)``; ours ``(k, k, C, 1)``."""
    return array.transpose(0, 1, 3, 2) if "depthwise" in path and array.ndim == 4 else array


#: keras.applications' files: the model normalises its 0-255 input itself.
KERAS_FORMAT = WeightFormat(
    config={"include_preprocessing": True}, keras_reference=keras_reference, keras_convert=keras_convert,
    preprocessing="none",
)
TIMM_FORMAT = WeightFormat(
    key_map=KeyMap(module_name=timm_module_name, head_prefixes=("head.fc.",), head_norm_prefixes=("head.norm.",),
                   ln_epsilon=1e-6)
)

_DEEP = (3, 3, 27, 3)  # the depths of Small, Base, Large and XLarge
#: timm trainable parameters.
VARIANTS = (
    Variant("convnext_tiny", "ConvNeXtTiny", {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)}, 28_589_128),
    Variant("convnext_small", "ConvNeXtSmall", {"depths": _DEEP, "dims": (96, 192, 384, 768)}, 50_223_688),
    Variant("convnext_base", "ConvNeXtBase", {"depths": _DEEP, "dims": (128, 256, 512, 1024)}, 88_591_464),
    Variant("convnext_large", "ConvNeXtLarge", {"depths": _DEEP, "dims": (192, 384, 768, 1536)}, 197_767_336),
    Variant("convnext_xlarge", "ConvNeXtXLarge", {"depths": _DEEP, "dims": (256, 512, 1024, 2048)}, 350_196_968),
)
_TINY = {"depths": (1, 1, 2, 1), "dims": (8, 16, 24, 32), "layer_scale_init_value": 0.5}

SPECS = register_variants(
    VARIANTS,
    ConvNeXtConfig,
    lambda variant, config: {"reference": f"timm {variant.name}", "timm_name": variant.name},
    family="convnext",
    body=convnext_body,
    head=convnext_head,
    paper=PAPER,
    test_overrides=_TINY,
    weight_formats={"keras": KERAS_FORMAT, "timm": TIMM_FORMAT},
    preprocessing="torch",
)

_DOC = """Instantiates {entry}: {params:.1f}M parameters (timm ``{name}``).

    Same signature as ``keras.applications.{entry}``, whose architecture it
    reproduces layer for layer (outputs equal once weights are copied), with
    these differences: the depthwise 7x7 is a ``DepthwiseConv2D`` (Keras'
    ``Conv2D(groups=C)`` does not convert to ONNX), GELU is the erf form
    ``layers.gelu.gelu_exact`` (the TFLite builtin, ONNX ``Erf``), stochastic
    depth drops per sample (timm), input
    normalisation is off unless ``include_preprocessing=True`` is passed, and
    ``include_top=False, pooling=None`` returns the plain feature map (Keras
    adds a LayerNorm there); with ``pooling="avg"|"max"`` the pooled features
    go through the head LayerNorm, as in Keras.
"""
_EXAMPLE = """>>> model = {entry}(include_top=False, input_shape=(None, None, 3), pooling="avg")"""

ConvNeXtTiny, ConvNeXtSmall, ConvNeXtBase, ConvNeXtLarge, ConvNeXtXLarge = (
    make_entrypoint(variant.entrypoint, VARIANTS, __name__, doc=_DOC, example=_EXAMPLE) for variant in VARIANTS
)
