"""CCNN: the continuous convolutional network for 1D, 2D and 3D data at any resolution."""

import dataclasses
from typing import Optional, Tuple, Union

from keras_convzoo.applications._builder import build_application
from keras_convzoo.applications._registry import ModelSpec, register
from keras_convzoo.backend import keras
from keras_convzoo.blocks.ccnn import ccnn_block, dropout_layer
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.separable_flex_conv import SeparableFlexConv
from keras_convzoo.weights.ccnn import port_ccnn
from keras_convzoo.weights.formats import WeightFormat

PAPER = (
    "Knigge, Romero et al., Modelling Long Range Dependencies in ND: From Task-Specific to a "
    "General Purpose CNN, ICLR 2023"
)
#: Kernel grid of 1D models whose sequence length is not static (the reference sizes it to the input).
DEFAULT_SEQUENCE_GRID = 1024
DEFAULT_IMAGE_GRID = 33


@dataclasses.dataclass(frozen=True)
class CCNNConfig:
    """Architecture of CCNN (the official ``ResNet`` with ``S4`` pre-norm blocks).

    Attributes:
        depth: residual blocks.
        width: channels of every block.
        kernel_hidden: hidden units of each MAGNet kernel network.
        kernel_layers: MAGNet hidden layers (3 in every published model).
        kernel_network: ``"magnet"`` (the paper's) or ``"siren"`` / ``"mlp"``.
        omega_0: MAGNet frequency scale; None: ``default_omega_0[dims - 1]``.
        default_omega_0: per-dimensionality defaults (1D, 2D, 3D), the
            paper's sMNIST / CIFAR-10 values of the variant.
        mask_init: initial Gaussian mask width of every SeparableFlexConv.
        mask_threshold: mask cropping threshold.
        kernel_size: kernel grid points per dim; None: the static sequence
            length in 1D (the reference's ``"same"``; 1024 when the length
            is not static), 33 for images and volumes.
        causal: causal convolutions; None: causal for sequences only.
        dropout: dropout rate inside every block.
        dropout_in: dropout on the input.
        dropout_type: ``"spatial"`` (channel-wise) or ``"plain"``.
        conv_method: ``"auto"``, ``"direct"`` or ``"fft"`` (see FlexConv).
        fft_threshold: kernel taps per dim above which ``"auto"`` uses the FFT
            (None: the measured default per dimensionality, see FlexConv).
        resolution: ``"fixed"`` (reference) or ``"continuous"`` (the kernel is
            resampled for other input sizes; needs ``train_size``).
        train_size: input size the kernel grid is set for (``"continuous"``).
        seed: int seed of the kernel-network initialisation.
    """

    depth: int = 4
    width: int = 140
    kernel_hidden: int = 32
    kernel_layers: int = 3
    kernel_network: str = "magnet"
    omega_0: Optional[float] = None
    default_omega_0: Tuple[float, float, float] = (2976.49, 4231.57, 4231.57)
    mask_init: float = 0.075
    mask_threshold: float = 0.1
    kernel_size: Union[None, int, Tuple[int, ...]] = None
    causal: Optional[bool] = None
    dropout: float = 0.0
    dropout_in: float = 0.0
    dropout_type: str = "spatial"
    conv_method: str = "auto"
    fft_threshold: Optional[int] = None
    resolution: str = "fixed"
    train_size: Union[None, int, Tuple[int, ...]] = None
    seed: Optional[int] = None


def _check(config, dims):
    for field in ("depth", "width", "kernel_hidden", "kernel_layers"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{field}` must be a positive int. Received: {field}={value!r}")
    for field in ("dropout", "dropout_in"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"`{field}` must be in [0, 1). Received: {field}={value!r}")
    if config.causal and dims != 1:
        raise ValueError(f"`causal=True` is for sequences (1 spatial dim). Received an input with {dims} spatial dims.")


def layer_arguments(config, dims, length=None):
    """The ``SeparableFlexConv`` arguments every CCNN layer shares (without ``filters``/``name``/``seed``)."""
    kernel_size = config.kernel_size
    if kernel_size is None:
        kernel_size = (length or DEFAULT_SEQUENCE_GRID) if dims == 1 else DEFAULT_IMAGE_GRID
    return dict(
        kernel_size=kernel_size,
        causal=(dims == 1) if config.causal is None else config.causal,
        mask_init=config.mask_init,
        mask_threshold=config.mask_threshold,
        kernel_network=config.kernel_network,
        kernel_hidden=config.kernel_hidden,
        kernel_layers=config.kernel_layers,
        omega_0=config.omega_0 if config.omega_0 is not None else config.default_omega_0[dims - 1],
        conv_method=config.conv_method,
        fft_threshold=config.fft_threshold,
        resolution=config.resolution,
        train_size=config.train_size,
    )


def ccnn_body(x, config):
    """Adds the CCNN trunk: input dropout, SeparableFlexConv stem + BN + GELU, blocks, final BN.

    The dimensionality follows ``x``: ``(batch, length, C)``, ``(batch, H,
    W, C)`` or ``(batch, D, H, W, C)``. Layer names: ``input_dropout``,
    ``stem_conv``, ``stem_norm``, ``stem_gelu``, ``block{i}_*`` (see
    ``blocks.ccnn_block``), ``final_norm`` (the reference's BN before
    pooling, part of the trunk so every output matches its forward).

    Returns:
        ``(x, features)`` with ``stem`` and ``block{i}`` outputs.
    """
    dims = len(x.shape) - 2
    _check(config, dims)
    length = x.shape[1] if dims == 1 else None
    conv = layer_arguments(config, dims, length)
    seed = config.seed
    if config.dropout_in:
        x = dropout_layer(config.dropout_in, config.dropout_type, dims, "input_dropout")(x)
    x = SeparableFlexConv(config.width, seed=seed, name="stem_conv", **conv)(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="stem_norm")(x)
    x = GELU(name="stem_gelu")(x)
    features = {"stem": x}
    for i in range(1, config.depth + 1):
        block_conv = dict(conv, seed=None if seed is None else seed + i)
        x = ccnn_block(x, block_conv, config.dropout, config.dropout_type, name=f"block{i}")
        features[f"block{i}"] = x
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="final_norm")(x)
    return x, features


_TINY = {"depth": 2, "width": 12, "kernel_hidden": 8, "kernel_size": 9, "mask_init": 0.4}

# name, depth, width, kernel hidden, default omega_0 (1D sMNIST/sCIFAR, 2D CIFAR-10), params 2D (3 -> 10)
_VARIANTS = (
    ("ccnn_4_140", 4, 140, 32, (2976.49, 4231.57, 4231.57), 201_042),
    ("ccnn_6_380", 6, 380, 64, (4005.146, 976.78, 976.78), 1_999_366),
)
#: Trainable parameters of the reference, 1D, 3 input channels, 10 classes (ccnn_notes.md).
REFERENCE_PARAMS_1D = {"ccnn_4_140": 199_117, "ccnn_6_380": 1_993_983}

SPECS = {
    name: register(
        ModelSpec(
            name=name,
            family="ccnn",
            entrypoint="CCNN",
            body=ccnn_body,
            config=CCNNConfig(depth=depth, width=width, kernel_hidden=hidden, default_omega_0=omega),
            default_size=32,
            min_size=1,
            spatial_dims=2,
            accepted_spatial_dims=(1, 2, 3),
            reference_params=params,
            reference="official david-knigge/ccnn, 2D, 3 input channels, 10 classes (ccnn_notes.md)",
            paper=PAPER,
            test_overrides=_TINY,
            reference_kwargs={"classes": 10, "input_shape": (32, 32, 3)},
            weight_formats={"official": WeightFormat(port=port_ccnn)},
        )
    )
    for name, depth, width, hidden, omega, params in _VARIANTS
}


def CCNN(
    input_shape=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    depth=4,
    width=140,
    kernel_hidden=32,
    **kwargs,
):
    """Instantiates a CCNN: one architecture for sequences, images and volumes.

    The dimensionality follows the input: ``input_shape=(None, C)`` builds a
    1D model (causal by default), ``(None, None, C)`` a 2D one, ``(None,
    None, None, C)`` a 3D one; ``None`` sizes run at any size without
    rebuilding. ``depth=4, width=140, kernel_hidden=32`` is CCNN_4,140
    (registered ``ccnn_4_140``), ``depth=6, width=380, kernel_hidden=64``
    CCNN_6,380 (``ccnn_6_380``); other values build the same family.
    Parameter counts equal the official code's (201,042 / 1,999,366 in 2D
    and 199,117 / 1,993,983 in 1D, for 3 input channels and 10 classes).

    Every convolution is a ``layers.SeparableFlexConv`` (MAGNet kernel
    network, Gaussian mask with dynamic cropping, the sqrt(1/K) kernel
    initialisation); blocks are pre-norm: ``x + GELU(Linear(Dropout(GELU(
    SeparableFlexConv(BN(x))))))``; the trunk ends with a BN, then global
    average pooling and the classifier. ``keras_convzoo.deploy.fuse`` bakes
    the generated kernels into plain depthwise convolutions for a fixed
    input size (for TFLite / ONNX).

    Args:
        input_shape: ``(length, C)``, ``(H, W, C)`` or ``(D, H, W, C)``,
            sizes may be None; default ``(32, 32, 3)`` with the top and
            ``(None, None, 3)`` without.
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in ``keras.applications``;
            ``weights`` may be a ``.weights.h5`` file of ours or an official
            CCNN state dict (``.npz`` / ``.pth`` / ``.safetensors``, see
            ``keras_convzoo.weights.port_ccnn``).
        depth: residual blocks.
        width: channels.
        kernel_hidden: hidden units of the kernel networks.
        **kwargs: other ``CCNNConfig`` fields: ``omega_0``, ``mask_init``,
            ``kernel_size``, ``causal``, ``dropout``, ``dropout_in``,
            ``dropout_type``, ``conv_method``, ``resolution``, ``train_size``...

    Returns:
        A ``keras.Model``.

    Example:
    >>> model = CCNN(input_shape=(None, None, 3), classes=10)
    >>> sequence_model = CCNN(input_shape=(784, 1), classes=10, depth=6, width=380, kernel_hidden=64)

    Reference:
        Knigge, Romero et al., "Modelling Long Range Dependencies in ND:
        From Task-Specific to a General Purpose CNN", ICLR 2023.
    """
    arguments = dict(
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
    )
    variant = {(4, 140, 32): "ccnn_4_140", (6, 380, 64): "ccnn_6_380"}.get((depth, width, kernel_hidden))
    spec = SPECS[variant or "ccnn_4_140"]
    if variant is None:
        arguments["name"] = name or f"ccnn_{depth}_{width}"
    return build_application(spec, depth=depth, width=width, kernel_hidden=kernel_hidden, **arguments, **kwargs)
