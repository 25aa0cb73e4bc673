"""SE-ResNet and SE-ResNeXt (timm layout: SE after the last BN of each block)."""

from keras_convzoo.applications._builder import make_entrypoint
from keras_convzoo.applications._registry import ModelSpec, register
from keras_convzoo.applications._residual import (
    RESNET_TINY,
    RESNEXT_PAPER,
    SENET_PAPER,
    TIMM_FORMAT,
    ResNetConfig,
    residual_body,
)

# name, entrypoint, block, depths, cardinality, base_width, timm trainable params
_VARIANTS = (
    ("seresnet18", "SEResNet18", "basic", (2, 2, 2, 2), 1, 64, 11_779_624),
    ("seresnet34", "SEResNet34", "basic", (3, 4, 6, 3), 1, 64, 21_960_416),
    ("seresnet50", "SEResNet50", "bottleneck", (3, 4, 6, 3), 1, 64, 28_088_024),
    ("seresnet101", "SEResNet101", "bottleneck", (3, 4, 23, 3), 1, 64, 49_326_872),
    ("seresnet152", "SEResNet152", "bottleneck", (3, 8, 36, 3), 1, 64, 66_821_848),
    ("seresnext50_32x4d", "SEResNeXt50", "bottleneck", (3, 4, 6, 3), 32, 4, 27_559_896),
    ("seresnext101_32x4d", "SEResNeXt101", "bottleneck", (3, 4, 23, 3), 32, 4, 48_955_416),
)

SPECS = {}
for _name, _entry, _block, _depths, _cardinality, _base_width, _params in _VARIANTS:
    _tiny = dict(RESNET_TINY, se_ratio=0.25)
    if _cardinality > 1:
        _tiny.update(cardinality=4, base_width=32)
    SPECS[_name] = register(
        ModelSpec(
            name=_name,
            family="seresnext" if _cardinality > 1 else "seresnet",
            entrypoint=_entry,
            body=residual_body,
            config=ResNetConfig(
                block=_block,
                depths=_depths,
                cardinality=_cardinality,
                base_width=_base_width,
                se_ratio=1 / 16,
                se_divisor=8,
            ),
            reference_params=_params,
            reference=f"timm {_name}",
            paper=SENET_PAPER + ("; " + RESNEXT_PAPER if _cardinality > 1 else ""),
            test_overrides=_tiny,
            timm_name=_name,
            weight_formats={"timm": TIMM_FORMAT},
            preprocessing="torch",
        )
    )

_SE_DOC = """Instantiates {title}: {params:.1f}M parameters (timm ``{name}``).

    Drop-in for ``keras.applications.ResNet50``'s signature. Layout and layer
    order follow timm ``{name}``: {block} blocks, squeeze-excite (ratio 1/16,
    width rounded to a multiple of 8) after the last BN of each block.

    Reference:
        Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.{extra}

    Example:
    >>> model = {entry}(include_top=False, input_shape=(None, None, 3), pooling="avg")
"""


def _entry(name, title):
    spec = SPECS[name]
    extra = ""
    if spec.config.cardinality > 1:
        extra = '\n        Xie et al., "Aggregated Residual Transformations", CVPR 2017.'
    doc = _SE_DOC.format(
        title=title,
        params=spec.reference_params / 1e6,
        name=name,
        block=spec.config.block,
        extra=extra,
        entry=spec.entrypoint,
    )
    return make_entrypoint(spec, doc, __name__)


SEResNet18 = _entry("seresnet18", "SE-ResNet-18")
SEResNet34 = _entry("seresnet34", "SE-ResNet-34")
SEResNet50 = _entry("seresnet50", "SE-ResNet-50")
SEResNet101 = _entry("seresnet101", "SE-ResNet-101")
SEResNet152 = _entry("seresnet152", "SE-ResNet-152")
SEResNeXt50 = _entry("seresnext50_32x4d", "SE-ResNeXt-50 (32x4d)")
SEResNeXt101 = _entry("seresnext101_32x4d", "SE-ResNeXt-101 (32x4d)")
