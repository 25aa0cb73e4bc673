"""The CCNN residual block (pre-norm "S4" block with a SeparableFlexConv)."""

from keras_convzoo.backend import keras
from keras_convzoo.layers.batch_normalization import BatchNormalization
from keras_convzoo.layers.gelu import GELU
from keras_convzoo.layers.continuous_conv import KAIMING_NORMAL
from keras_convzoo.layers.separable_flex_conv import SeparableFlexConv

_SPATIAL_DROPOUT = {1: "SpatialDropout1D", 2: "SpatialDropout2D", 3: "SpatialDropout3D"}
DROPOUT_TYPES = ("spatial", "plain")


def dropout_layer(rate, dropout_type, dims, name):
    """Channel-wise (``"spatial"``) or element-wise (``"plain"``) dropout for a ``dims``-D map."""
    if dropout_type not in DROPOUT_TYPES:
        raise ValueError(f"`dropout_type` must be one of {DROPOUT_TYPES}. Received: dropout_type={dropout_type!r}")
    if dropout_type == "spatial":
        return getattr(keras.layers, _SPATIAL_DROPOUT[dims])(rate, name=name)
    return keras.layers.Dropout(rate, name=name)


def ccnn_block(x, conv_kwargs, dropout=0.0, dropout_type="spatial", name="block"):
    """Adds a CCNN block: ``x + GELU(Linear(Dropout(GELU(SeparableFlexConv(BN(x))))))``.

    The pre-norm residual block of the official CCNN (two GELUs, both before
    the residual add; no norm after it). Layer names: ``{name}_norm``,
    ``_conv``, ``_gelu1``, ``_dropout`` (only when ``dropout > 0``),
    ``_linear`` (pointwise ``Dense``, kaiming-normal init), ``_gelu2``,
    ``_add``. Works on 1D, 2D and 3D maps.

    Args:
        x: symbolic tensor ``(batch, *spatial, channels)``.
        conv_kwargs: arguments of the block's ``SeparableFlexConv`` (its
            ``filters`` is the input channel count).
        dropout: dropout rate after the first GELU.
        dropout_type: ``"spatial"`` (channel-wise) or ``"plain"``.
        name: prefix of the layer names.

    Returns:
        The block output (same shape as ``x``).

    Example:
    >>> inputs = keras.Input((None, 16))
    >>> ccnn_block(inputs, dict(kernel_size=128, causal=True), name="block1").shape
    (None, None, 16)

    Reference:
        Knigge, Romero et al., "Modelling Long Range Dependencies in ND:
        From Task-Specific to a General Purpose CNN", ICLR 2023.
    """
    channels = int(x.shape[-1])
    y = BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_norm")(x)
    y = SeparableFlexConv(channels, name=f"{name}_conv", **conv_kwargs)(y)
    y = GELU(name=f"{name}_gelu1")(y)
    if dropout:
        y = dropout_layer(dropout, dropout_type, len(x.shape) - 2, f"{name}_dropout")(y)
    y = keras.layers.Dense(channels, kernel_initializer=KAIMING_NORMAL, name=f"{name}_linear")(y)
    y = GELU(name=f"{name}_gelu2")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])
