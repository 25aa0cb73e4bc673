"""SE-ResNet and SE-ResNeXt (timm layout: SE after the last BN of each block)."""

from keras_convzoo.applications._entrypoints import Variant, make_entrypoint, register_variants
from keras_convzoo.applications._residual import (
    RESNET_TINY,
    RESNEXT_PAPER,
    SENET_PAPER,
    TIMM_FORMAT,
    ResNetConfig,
    residual_body,
)

_SE = {"se_ratio": 1 / 16, "se_divisor": 8}
_RESNEXT = {"cardinality": 32, "base_width": 4}

#: timm trainable parameters.
VARIANTS = (
    Variant("seresnet18", "SEResNet18", dict(_SE, block="basic", depths=(2, 2, 2, 2)), 11_779_624,
            title="SE-ResNet-18"),
    Variant("seresnet34", "SEResNet34", dict(_SE, block="basic", depths=(3, 4, 6, 3)), 21_960_416,
            title="SE-ResNet-34"),
    Variant("seresnet50", "SEResNet50", dict(_SE, block="bottleneck", depths=(3, 4, 6, 3)), 28_088_024,
            title="SE-ResNet-50"),
    Variant("seresnet101", "SEResNet101", dict(_SE, block="bottleneck", depths=(3, 4, 23, 3)), 49_326_872,
            title="SE-ResNet-101"),
    Variant("seresnet152", "SEResNet152", dict(_SE, block="bottleneck", depths=(3, 8, 36, 3)), 66_821_848,
            title="SE-ResNet-152"),
    Variant("seresnext50_32x4d", "SEResNeXt50", dict(_SE, **_RESNEXT, block="bottleneck", depths=(3, 4, 6, 3)),
            27_559_896, title="SE-ResNeXt-50 (32x4d)"),
    Variant("seresnext101_32x4d", "SEResNeXt101", dict(_SE, **_RESNEXT, block="bottleneck", depths=(3, 4, 23, 3)),
            48_955_416, title="SE-ResNeXt-101 (32x4d)"),
)


def _derived(variant, config):
    """The fields of an SE-ResNeXt (cardinality > 1) that differ from an SE-ResNet's."""
    resnext = config.cardinality > 1
    tiny = dict(RESNET_TINY, se_ratio=0.25, **({"cardinality": 4, "base_width": 32} if resnext else {}))
    return {
        "family": "seresnext" if resnext else "seresnet",
        "reference": f"timm {variant.name}",
        "paper": SENET_PAPER + ("; " + RESNEXT_PAPER if resnext else ""),
        "test_overrides": tiny,
        "timm_name": variant.name,
    }


SPECS = register_variants(
    VARIANTS,
    ResNetConfig,
    _derived,
    body=residual_body,
    weight_formats={"timm": TIMM_FORMAT},
    preprocessing="torch",
)

_DOC = """Instantiates {title}: {params:.1f}M parameters (timm ``{name}``).

    Drop-in for ``keras.applications.ResNet50``'s signature. Layout and layer
    order follow timm ``{name}``: {config.block} blocks, squeeze-excite (ratio 1/16,
    width rounded to a multiple of 8) after the last BN of each block.
"""
_EXAMPLE = """>>> model = {entry}(include_top=False, input_shape=(None, None, 3), pooling="avg")"""


def _entry(entrypoint):
    return make_entrypoint(entrypoint, VARIANTS, __name__, doc=_DOC, example=_EXAMPLE)


SEResNet18 = _entry("SEResNet18")
SEResNet34 = _entry("SEResNet34")
SEResNet50 = _entry("SEResNet50")
SEResNet101 = _entry("SEResNet101")
SEResNet152 = _entry("SEResNet152")
SEResNeXt50 = _entry("SEResNeXt50")
SEResNeXt101 = _entry("SEResNeXt101")
