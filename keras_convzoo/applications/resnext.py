"""ResNeXt (torchvision layout): ResNeXt50 32x4d and ResNeXt101 32x8d."""

from keras_convzoo.applications._builder import make_entrypoint
from keras_convzoo.applications._registry import ModelSpec, register
from keras_convzoo.applications._residual import (
    RESNET_TINY,
    RESNEXT_PAPER,
    TIMM_FORMAT,
    ResNetConfig,
    residual_body,
)

_TINY = dict(RESNET_TINY, cardinality=4, base_width=32)


def _resnext(name, entrypoint, depths, base_width, reference_params):
    return register(
        ModelSpec(
            name=name,
            family="resnext",
            entrypoint=entrypoint,
            body=residual_body,
            config=ResNetConfig(depths=depths, cardinality=32, base_width=base_width),
            reference_params=reference_params,
            reference=f"torchvision/timm {name}",
            paper=RESNEXT_PAPER,
            test_overrides=_TINY,
            timm_name=name,
            weight_formats={"timm": TIMM_FORMAT},
            preprocessing="torch",
        )
    )


RESNEXT50_32X4D = _resnext("resnext50_32x4d", "ResNeXt50", (3, 4, 6, 3), 4, 25_028_904)
RESNEXT101_32X8D = _resnext("resnext101_32x8d", "ResNeXt101", (3, 4, 23, 3), 8, 88_791_336)

ResNeXt50 = make_entrypoint(
    RESNEXT50_32X4D,
    """Instantiates ResNeXt-50 (32x4d): 25.0M parameters, 4.26 GMACs at 224x224.

    Drop-in for ``keras.applications.ResNet50``'s signature. Layout and layer
    order follow torchvision/timm ``resnext50_32x4d`` (stride in the grouped
    3x3, PyTorch's symmetric padding, BN epsilon 1e-5).

    Reference:
        Xie et al., "Aggregated Residual Transformations for Deep Neural
        Networks", CVPR 2017.

    Example:
    >>> model = ResNeXt50(include_top=False, input_shape=(None, None, 3), pooling="avg")
""",
    __name__,
)

ResNeXt101 = make_entrypoint(
    RESNEXT101_32X8D,
    """Instantiates ResNeXt-101 (32x8d): 88.8M parameters.

    Drop-in for ``keras.applications.ResNet101``'s signature; layout of
    torchvision/timm ``resnext101_32x8d``.

    Reference:
        Xie et al., "Aggregated Residual Transformations for Deep Neural
        Networks", CVPR 2017.

    Example:
    >>> model = ResNeXt101(classes=10, input_shape=(64, 64, 3))
""",
    __name__,
)
