"""CCNN: the continuous convolutional network for 1D, 2D and 3D data at any resolution."""

import dataclasses
import math
import warnings
from typing import Optional, Tuple, Union

from keras_convzoo.applications._entrypoints import (
    MOBILENET_V2_ORDER,
    Selector,
    Variant,
    make_entrypoint,
    register_variants,
)
from keras_convzoo.applications._registry import config_field
from keras_convzoo.blocks.ccnn import DROPOUT_TYPES, ccnn_block, dropout_layer
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.layers.continuous_conv import CONV_METHODS, KERNEL_NETWORKS, RESOLUTIONS
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.separable_flex_conv import SeparableFlexConv
from keras_convzoo.weights._moved import register_moved
from keras_convzoo.weights.ccnn import port_official_state_dict
from keras_convzoo.weights.formats import WeightFormat

PAPER = (
    "Knigge, Romero et al., Modelling Long Range Dependencies in ND: From Task-Specific to a "
    "General Purpose CNN, ICLR 2023"
)
#: Kernel grid of 1D models whose sequence length is not static (the reference sizes it to the input).
DEFAULT_SEQUENCE_GRID = 1024
DEFAULT_IMAGE_GRID = 33
#: Grid intervals per unit of MAGNet frequency scale at the largest ``omega_0`` whose initial kernels are
#: still smooth between the grid points (``continuous_omega_0``): 16 in 2D, i.e. ``omega_0=0.5`` on a
#: 9-point grid, 2.0 on the default 33-point grid (measured, see ``continuous_omega_0``).
_INTERVALS_PER_OMEGA = 16.0


@dataclasses.dataclass(frozen=True)
class CCNNConfig:
    """Architecture of CCNN (the official ``ResNet`` with ``S4`` pre-norm blocks).

    Attributes:
        depth: residual blocks.
        width: channels of every block.
        kernel_hidden: hidden units of each MAGNet kernel network.
        kernel_layers: MAGNet hidden layers (3 in every published model).
        kernel_network: ``"magnet"`` (the paper's) or ``"siren"`` / ``"mlp"``.
        omega_0: MAGNet frequency scale of the kernel network's
            initialisation. None: with ``resolution="fixed"``
            ``default_omega_0[dims - 1]`` (the paper's, e.g. 4231.57 in 2D);
            with ``resolution="continuous"`` ``continuous_omega_0(grid,
            dims)`` (2.0 on the default 33-point 2D grid, 0.5 on a 9-point
            one), because the paper's values make kernels that are aliased
            on the grid (frequencies far above its Nyquist rate): they fit
            the training resolution but transfer nothing to another one.
            Measured (8x8 digits, default 33-point grid, test accuracy at
            8x8 / 16x16 / 32x32): 0.967 / 0.108 / 0.108 with 4231.57, 0.919 /
            0.811 / 0.849 with 2.0. An explicit ``omega_0`` above
            ``continuous_omega_0`` with ``resolution="continuous"`` gives a
            ``UserWarning``.
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
            resampled for other input sizes; needs ``train_size`` or a static
            input size; sets the default ``omega_0``, see there).
        train_size: input size the kernel grid is set for (``"continuous"``).
        seed: int seed of the kernel-network initialisation.
    """

    depth: int = config_field(4, minimum=1)
    width: int = config_field(140, minimum=1)
    kernel_hidden: int = config_field(32, minimum=1)
    kernel_layers: int = config_field(3, minimum=1)
    kernel_network: str = config_field("magnet", choices=KERNEL_NETWORKS)
    omega_0: Optional[float] = None
    default_omega_0: Tuple[float, float, float] = (2976.49, 4231.57, 4231.57)
    mask_init: float = 0.075
    mask_threshold: float = 0.1
    kernel_size: Union[None, int, Tuple[int, ...]] = config_field(None, minimum=1)
    causal: Optional[bool] = None
    dropout: float = 0.0
    dropout_in: float = 0.0
    dropout_type: str = config_field("spatial", choices=DROPOUT_TYPES)
    conv_method: str = config_field("auto", choices=CONV_METHODS)
    fft_threshold: Optional[int] = None
    resolution: str = config_field("fixed", choices=RESOLUTIONS)
    train_size: Union[None, int, Tuple[int, ...]] = config_field(None, minimum=1)
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


def continuous_omega_0(grid, dims):
    """The largest MAGNet ``omega_0`` whose initial kernels resample across resolutions.

    MAGNet's first-layer frequencies are ``U(-1/sqrt(dims), 1/sqrt(dims)) *
    2 pi omega_0 gamma`` with ``gamma`` around 1.5-12, so the paper's
    ``omega_0`` (~1000-4000) puts them far above the Nyquist rate of any
    kernel grid: the kernel takes unrelated values between its grid points,
    and ``resolution="continuous"``, which samples it between them at other
    input sizes, computes an unrelated convolution there. Measured at
    initialisation (a SeparableFlexConv, the taps added at 2x the training
    size against the mean of their neighbours, RMS relative to the kernel;
    3 seeds): 9-point grid: 1.43 at 4231.57, 0.96 at 3, 0.35 at 1, 0.16 at
    0.5; 33-point grid: 1.30 at 4231.57, 0.78 at 10, 0.17 at 3, 0.03 at 1.
    Trained on 8x8 digits (``tools/ccnn_resolution_transfer.py``'s model,
    12 epochs, seed 0, one run each), test accuracy at 8x8 / 16x16 / 32x32
    (upsampled test images). Default 33-point grid, default mask 0.075:
    0.967 / 0.108 / 0.108 with 4231.57 (the paper's), 0.962 / 0.363 / 0.411
    with 4.0, 0.919 / 0.811 / 0.849 with 2.0 (this rule), 0.720 / 0.627 /
    0.662 with 1.0. 9-point grid, mask 0.5: 0.932 / 0.108 / 0.108 with
    4231.57, 0.859 / 0.569 / 0.569 with 0.5 (this rule), 0.642 / 0.592 /
    0.594 with 0.25. Lower values resample better but fit the training
    resolution worse.

    Args:
        grid: kernel grid points per dim at the training size (an int or a
            tuple; the coarsest dim counts).
        dims: spatial dims (1, 2 or 3).

    Returns:
        ``(min(grid) - 1) * sqrt(dims / 2) / 16``: 2.0 for the default
        33-point 2D grid, 0.5 for a 9-point one.

    Example:
    >>> continuous_omega_0(33, 2)
    2.0
    """
    points = min(grid) if isinstance(grid, (tuple, list)) else grid
    return (points - 1) * math.sqrt(dims / 2) / _INTERVALS_PER_OMEGA


def layer_arguments(config, dims, length=None):
    """The ``SeparableFlexConv`` arguments every CCNN layer shares (without ``filters``/``name``/``seed``)."""
    kernel_size = config.kernel_size
    if kernel_size is None:
        kernel_size = (length or DEFAULT_SEQUENCE_GRID) if dims == 1 else DEFAULT_IMAGE_GRID
    omega_0 = config.omega_0
    if omega_0 is None:
        omega_0 = config.default_omega_0[dims - 1]
        if config.resolution == "continuous" and config.kernel_network == "magnet":
            omega_0 = continuous_omega_0(kernel_size, dims)
    return dict(
        kernel_size=kernel_size,
        causal=(dims == 1) if config.causal is None else config.causal,
        mask_init=config.mask_init,
        mask_threshold=config.mask_threshold,
        kernel_network=config.kernel_network,
        kernel_hidden=config.kernel_hidden,
        kernel_layers=config.kernel_layers,
        omega_0=omega_0,
        conv_method=config.conv_method,
        fft_threshold=config.fft_threshold,
        resolution=config.resolution,
        train_size=config.train_size,
    )


def _warn_aliased_kernels(config, dims, conv):
    """UserWarning for an explicit MAGNet ``omega_0`` too high for ``resolution="continuous"``."""
    if config.resolution != "continuous" or config.kernel_network != "magnet" or config.omega_0 is None:
        return
    grid = conv["kernel_size"]
    bound = continuous_omega_0(grid, dims)
    if config.omega_0 > bound * (1 + 1e-6):
        points = "x".join(str(n) for n in grid) if isinstance(grid, (tuple, list)) else grid
        warnings.warn(
            f"CCNN: resolution='continuous' with omega_0={config.omega_0} on a {points}-point kernel grid: the "
            "kernels alias on the grid and transfer poorly to other resolutions (see CCNNConfig.omega_0); use "
            f"omega_0<={bound:.4g} (omega_0=None picks {bound:.4g} with resolution='continuous').",
            UserWarning,
            stacklevel=5,  # the user's CCNN(...) / create_model(...) call
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
    _warn_aliased_kernels(config, dims, conv)
    seed = config.seed
    if config.dropout_in:
        x = dropout_layer(config.dropout_in, config.dropout_type, dims, "input_dropout")(x)
    x = SeparableFlexConv(config.width, seed=seed, name="stem_conv", **conv)(x)
    x = BatchNormalization(epsilon=1e-5, momentum=0.9, name="stem_norm")(x)
    x = GELU(name="stem_gelu")(x)
    features = {"stem": x}
    for i in range(1, config.depth + 1):
        block_conv = dict(conv, seed=None if seed is None else seed + i)
        x = ccnn_block(x, block_conv, config.dropout, config.dropout_type, name=f"block{i}")
        features[f"block{i}"] = x
    x = BatchNormalization(epsilon=1e-5, momentum=0.9, name="final_norm")(x)
    return x, features


_TINY = {"depth": 2, "width": 12, "kernel_hidden": 8, "kernel_size": 9, "mask_init": 0.4}

#: Official module of our CCNN layers whose names are not ``block{i}_*``.
_OFFICIAL_FIXED = {"stem_conv": "conv1", "stem_norm": "norm1", "final_norm": "out_norm", "predictions": "out_layer"}
#: Official module of each part of our ``block{i}_*`` layers (``blocks.{i-1}.<module>``).
_OFFICIAL_BLOCK = {"conv": "conv1", "norm": "norm1", "linear": "linear1"}


def official_module_name(layer_name):
    """The official CCNN module (PyTorch names) of one of our CCNN layers: the family's key map.

    Args:
        layer_name: one of our layer names (``"block3_conv"``).

    Returns:
        The official module prefix (``"blocks.2.conv1"``), or None for a
        weightless or unknown layer.

    Example:
    >>> official_module_name("block3_conv")
    'blocks.2.conv1'
    """
    if layer_name in _OFFICIAL_FIXED:
        return _OFFICIAL_FIXED[layer_name]
    if layer_name.startswith("block"):
        index, _, part = layer_name[len("block"):].partition("_")
        module = _OFFICIAL_BLOCK.get(part)
        if index.isdigit() and module:
            return f"blocks.{int(index) - 1}.{module}"
    return None


def port_ccnn(model, state_dict):
    """Loads an official CCNN state dict into a ``keras_convzoo.CCNN`` model (all or nothing).

    The official PyTorch names (``conv1.*`` stem, ``norm1.*``,
    ``blocks.{i}.conv1/norm1/linear1.*``, ``out_norm.*``, ``out_layer.*``)
    are mapped to our layer names by ``official_module_name``;
    ``keras_convzoo.weights.ccnn.port_official_state_dict`` converts the
    arrays and checks everything (shapes, the kernel grid: build with
    ``kernel_size=train_length``, mask centre and threshold, every tensor
    used; ``out_layer`` may be left out with ``include_top=False``) before
    writing. On any mismatch the model is left unchanged.

    Args:
        model: a CCNN built with the checkpoint's configuration.
        state_dict: mapping of names to numpy arrays or torch tensors (see
            ``keras_convzoo.weights.read_state_dict`` for files).

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the first problem.

    Example:
    >>> model = keras_convzoo.CCNN(input_shape=(None, None, 3), classes=10, kernel_size=33)
    >>> port_ccnn(model, read_state_dict("ccnn_cifar10.safetensors"))
    """
    return port_official_state_dict(model, state_dict, official_module_name)


register_moved("port_ccnn", "keras_convzoo.applications.port_ccnn", port_ccnn)


#: Parameters in 2D, 3 input channels, 10 classes; ``default_omega_0``: the paper's for 1D (sMNIST /
#: sCIFAR) and 2D (CIFAR-10), the 2D value for 3D.
VARIANTS = (
    Variant("ccnn_4_140", "CCNN",
            {"depth": 4, "width": 140, "kernel_hidden": 32, "default_omega_0": (2976.49, 4231.57, 4231.57)},
            201_042, selector=(4, 140, 32)),
    Variant("ccnn_6_380", "CCNN",
            {"depth": 6, "width": 380, "kernel_hidden": 64, "default_omega_0": (4005.146, 976.78, 976.78)},
            1_999_366, selector=(6, 380, 64)),
)
#: Trainable parameters of the reference, 1D, 3 input channels, 10 classes (ccnn_notes.md).
REFERENCE_PARAMS_1D = {"ccnn_4_140": 199_117, "ccnn_6_380": 1_993_983}

SPECS = register_variants(
    VARIANTS,
    CCNNConfig,
    family="ccnn",
    body=ccnn_body,
    default_size=32,
    min_size=1,
    spatial_dims=2,
    accepted_spatial_dims=(1, 2, 3),
    reference="official david-knigge/ccnn, 2D, 3 input channels, 10 classes (ccnn_notes.md)",
    paper=PAPER,
    test_overrides=_TINY,
    reference_kwargs={"classes": 10, "input_shape": (32, 32, 3)},
    weight_formats={"official": WeightFormat(port=port_ccnn)},
)

CCNN = make_entrypoint(
    "CCNN",
    VARIANTS,
    __name__,
    order=MOBILENET_V2_ORDER,
    selector=Selector(
        ("depth", "width", "kernel_hidden"),
        ("residual blocks", "channels of every block", "hidden units of the kernel networks"),
        (4, 140, 32),
        after="name",
        name_format="ccnn_{depth}_{width}",
    ),
    doc="""Instantiates a CCNN: one architecture for sequences, images and volumes.

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
    """,
    notes={
        "weights": "The official checkpoints are ported by ``keras_convzoo.applications.port_ccnn``.",
        "kwargs": """``resolution="continuous"`` (with ``train_size`` or a static input size) resamples the
            kernels at other input sizes; it needs kernels smooth on the training grid, so ``omega_0=None``
            then means ``continuous_omega_0`` (2.0 on the default 33-point 2D grid) instead of the paper's
            ~4000, and a larger explicit ``omega_0`` gives a ``UserWarning``.""",
    },
    example=""">>> model = CCNN(input_shape=(None, None, 3), classes=10)
        >>> sequence_model = CCNN(input_shape=(784, 1), classes=10, depth=6, width=380, kernel_hidden=64)""",
)
