"""ResNeXt (torchvision layout): ResNeXt50 32x4d and ResNeXt101 32x8d."""

from keras_convzoo.applications._entrypoints import Variant, make_entrypoint, register_variants
from keras_convzoo.applications._residual import (
    RESNET_TINY,
    RESNEXT_PAPER,
    TIMM_FORMAT,
    ResNetConfig,
    residual_body,
)

VARIANTS = (
    Variant("resnext50_32x4d", "ResNeXt50", {"depths": (3, 4, 6, 3), "cardinality": 32, "base_width": 4},
            25_028_904, title="ResNeXt-50 (32x4d)"),
    Variant("resnext101_32x8d", "ResNeXt101", {"depths": (3, 4, 23, 3), "cardinality": 32, "base_width": 8},
            88_791_336, title="ResNeXt-101 (32x8d)"),
)

SPECS = register_variants(
    VARIANTS,
    ResNetConfig,
    lambda variant, config: {"reference": f"torchvision/timm {variant.name}", "timm_name": variant.name},
    family="resnext",
    body=residual_body,
    paper=RESNEXT_PAPER,
    test_overrides=dict(RESNET_TINY, cardinality=4, base_width=32),
    weight_formats={"timm": TIMM_FORMAT},
    preprocessing="torch",
)
RESNEXT50_32X4D, RESNEXT101_32X8D = SPECS.values()

_DOC = """Instantiates {title}: {params:.1f}M parameters (torchvision/timm ``{name}``).

    Drop-in for the signature of ``keras.applications.ResNet50`` / ``ResNet101``. Layout and layer order
    follow torchvision/timm ``{name}``: bottleneck blocks with the stride in the grouped 3x3
    (cardinality {config.cardinality}, base width {config.base_width}), PyTorch's symmetric padding, BN
    epsilon 1e-5.
"""
_EXAMPLE = """>>> model = {entry}(include_top=False, input_shape=(None, None, 3), pooling="avg")"""

ResNeXt50 = make_entrypoint("ResNeXt50", VARIANTS, __name__, doc=_DOC, example=_EXAMPLE)
ResNeXt101 = make_entrypoint("ResNeXt101", VARIANTS, __name__, doc=_DOC, example=_EXAMPLE)
