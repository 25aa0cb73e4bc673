"""Input shapes: the one place where a model's input shape is read, merged with a requested one and checked.

It also reads the scaling a model applies to its input first (``input_scaling``,
``scales_pixels``), which preprocessing (``applications``) and the exporters'
input ranges (``export.inputs``) both need.

Every part of the package that needs an input shape goes through here, with
one rule each:

- the builder (``build_application``): ``application_input_shape`` turns
  ``input_shape`` / ``input_tensor`` / the family default into the shape of
  the model's ``Input`` (``None`` sides allowed);
- a registry name at a size (profile, CLI, tools): ``spec_input_shape``
  (``input_size`` as one int or one int per spatial dim, checked by
  ``spatial_sizes``; default the family's ``default_size``);
- a built model (export, ``count_flops``, ``benchmark``): ``model_input``
  reads its single float input, ``merge_input_shape`` merges it with a
  requested full shape or spatial sizes, and ``concrete_input_shape`` also
  fills sizes the model leaves open (``None``) with ``DEFAULT_SPATIAL_SIZE``
  where a caller may pick one (export's synthetic inputs and TFLite's fixed
  shape) or refuses them.

Shapes never include the batch axis; models are channels_last.
"""

import os
import re

import numpy as np

from keras_convzoo.backend import LEGACY_KERAS, is_keras_tensor, keras, tf

#: Side used for each ``None`` spatial dimension when a concrete shape is needed and none is given.
DEFAULT_SPATIAL_SIZE = 224

#: Channel counts of images stored channels-first, ``(3, 224, 224)``: a shape that starts with one and
#: has more than 4 channels is refused with the channels_last spelling.
CHANNELS_FIRST_HINTS = (1, 3)

_TENSOR_LAYOUTS = {3: "(batch, length, channels)", 4: "(batch, height, width, channels)",
                   5: "(batch, depth, height, width, channels)"}


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_model(model, argument="model"):
    """Checks that ``model`` is a Keras model object (not, e.g., the path of a saved one).

    Args:
        model: what a caller received as a model.
        argument: the argument's name, for the message.

    Returns:
        ``model``.

    Raises:
        TypeError: for a path (with how to load it) or any other object
            that is not a Keras model.

    Example:
    >>> check_model("m.keras")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: `model` must be a Keras model, not a file path: load it first with ...
    """
    if isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(
            f"`{argument}` must be a Keras model, not a file path: load it first with keras.models.load_model(path) "
            f"after `import keras_convzoo` (or run `convzoo export PATH`). Received: {argument}={model!r}"
        )
    if not (hasattr(model, "layers") and callable(model)):
        raise TypeError(f"`{argument}` must be a Keras model. Received: {argument} of type {type(model).__name__}")
    return model


def spatial_sizes(input_size, spatial_dims, name="input_size", where=""):
    """Checks a requested input size and returns one positive int per spatial dim.

    Args:
        input_size: None, a positive int (every side) or ``spatial_dims``
            positive ints.
        spatial_dims: number of spatial dims of the model (1, 2 or 3).
        name: the argument's name in messages (``"--input-size"`` for the CLI).
        where: optional text after the rule in messages (``" for 'ccnn_4_140'"``).

    Returns:
        A tuple of ``spatial_dims`` ints, or None when ``input_size`` is None.

    Raises:
        ValueError: for anything else, naming ``name``.

    Example:
    >>> spatial_sizes(64, 2)
    (64, 64)
    """
    if input_size is None:
        return None
    if _is_int(input_size):
        input_size = (input_size,) * spatial_dims
    try:
        sizes = tuple(input_size)
    except TypeError:
        sizes = ()
    if len(sizes) == 1 and spatial_dims > 1:
        sizes = sizes * spatial_dims
    if len(sizes) != spatial_dims or any(not _is_int(s) or s < 1 for s in sizes):
        if name.startswith("--"):  # a command-line flag: its values as typed
            typed = " ".join(str(s) for s in input_size) if isinstance(input_size, (list, tuple)) else input_size
            raise ValueError(f"{name} needs 1 or {spatial_dims} positive sizes{where}. Received: {typed}")
        raise ValueError(
            f"`{name}` must be a positive int or {spatial_dims} positive ints (one per spatial dim){where}. "
            f"Received: {name}={input_size!r}"
        )
    return tuple(int(s) for s in sizes)


def spec_input_shape(spec, input_size=None, name="input_size"):
    """The input shape of a registered variant at ``input_size``.

    Args:
        spec: the variant's ``ModelSpec``.
        input_size: None (the family's ``default_size``), an int or one int
            per spatial dim (see ``spatial_sizes``).
        name: the argument's name in messages.

    Returns:
        The shape without batch, e.g. ``(224, 224, 3)``.

    Example:
    >>> spec_input_shape(keras_convzoo.get_spec("resnext50_32x4d"), 160)
    (160, 160, 3)
    """
    sizes = spatial_sizes(input_size, spec.spatial_dims, name, f" for {spec.name!r}")
    if sizes is None:
        return spec.input_shape_at(spec.default_size)
    return sizes + (spec.input_channels,)


def sanitize_name(name):
    """A TensorFlow-valid tensor name derived from a Keras input name.

    Example:
    >>> sanitize_name("input:0")
    'input'
    """
    name = str(name).split(":")[0]
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    if not name or not name[0].isalnum():
        name = "input" + (("_" + name) if name else "")
    return name


def model_input(model, what="Export"):
    """Returns ``(shape_without_batch, dtype, name)`` of a single-input model.

    Args:
        model: a built Keras 3 or tf_keras model.
        what: what needs the input, for messages (``"Export"``,
            ``"count_flops"``, ``"benchmark"``).

    Returns:
        The shape as a list (``None`` for open sizes), the ``tf.DType`` and
        a TensorFlow-valid input name.

    Raises:
        ValueError: for a model without defined inputs, with several inputs,
            a non-float input, or no batch axis.

    Example:
    >>> model_input(keras_convzoo.ResNeXt50(input_shape=(None, None, 3), include_top=False))[0]
    [None, None, 3]
    """
    check_model(model)
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"{what} needs a functional model or a model that has been built on an input "
            "(call it once on a batch); this model has no defined inputs."
        )
    if len(inputs) != 1:
        raise ValueError(f"{what} supports single-input models; this model has {len(inputs)} inputs.")
    tensor = inputs[0]
    shape = [None if d is None else int(d) for d in tuple(tensor.shape)]
    dtype = tf.as_dtype(tensor.dtype)
    if not dtype.is_floating:
        raise ValueError(f"{what} needs a model with float inputs; the model input is {dtype.name}.")
    if len(shape) < 2:
        raise ValueError(f"The model input must have a batch axis. Received shape: {shape}")
    name = getattr(tensor, "name", None) or "input"
    return shape[1:], dtype, sanitize_name(name)


def merge_input_shape(model_shape, input_shape, name="input_shape"):
    """Merges a model's input shape with a requested one.

    Args:
        model_shape: the model's input shape without batch (``None`` for
            open sizes).
        input_shape: None, a full shape without batch (``(64, 64, 3)``) or
            the spatial sizes only (``(64, 64)``: the model's channels).
        name: the argument's name in messages.

    Returns:
        A tuple without batch; sizes neither side gives stay ``None``.

    Raises:
        ValueError: when ``input_shape`` has the wrong rank or non-positive
            sizes, disagrees with a known model dimension, or the channel
            axis is unknown.

    Example:
    >>> merge_input_shape([None, None, 3], (64, 64))
    (64, 64, 3)
    """
    model_shape = list(model_shape)
    full = tuple([None] + model_shape)
    if input_shape is not None:
        if hasattr(input_shape, "as_list"):
            input_shape = input_shape.as_list()
        try:
            given = [int(d) for d in input_shape]
            if not all(_is_int(d) for d in input_shape):
                raise TypeError
        except (TypeError, ValueError):
            raise ValueError(
                f"`{name}` must be a tuple of positive ints without the batch axis, e.g. (64, 64, 3), "
                f"or the spatial sizes only, e.g. (64, 64). Received: {name}={input_shape!r}"
            ) from None
        if len(given) == len(model_shape) - 1 and model_shape[-1] is not None:  # spatial sizes only
            given.append(model_shape[-1])
        if len(given) != len(model_shape) or min(given) < 1:
            raise ValueError(
                f"`{name}` must be a tuple of positive ints without the batch axis, of "
                f"rank {len(model_shape)} for a model with input shape {full}. Received: {name}={tuple(input_shape)}"
            )
        for i, (m, g) in enumerate(zip(model_shape, given)):
            if m is not None and m != g:
                raise ValueError(
                    f"`{name}` disagrees with the model input {full} on axis {i + 1}. "
                    f"Received: {name}={tuple(input_shape)}"
                )
        model_shape = given
    if model_shape and model_shape[-1] is None:
        raise ValueError(
            f"The model's channel axis is unknown (None); build the model with a known channel count or pass `{name}`."
        )
    return tuple(model_shape)


def concrete_input_shape(model_shape, input_shape=None, fill=False, name="input_shape"):
    """``merge_input_shape`` with every size known: open sizes filled or refused.

    Args:
        model_shape: the model's input shape without batch.
        input_shape: as in ``merge_input_shape``.
        fill: fill sizes left open with ``DEFAULT_SPATIAL_SIZE``; when False
            they raise.
        name: the argument's name in messages.

    Returns:
        A tuple of ints without batch.

    Raises:
        ValueError: as ``merge_input_shape``, and for open sizes when
            ``fill=False``.

    Example:
    >>> concrete_input_shape([None, None, 3], fill=True)
    (224, 224, 3)
    """
    shape = merge_input_shape(model_shape, input_shape, name)
    if fill:
        return tuple(DEFAULT_SPATIAL_SIZE if d is None else int(d) for d in shape)
    if any(d is None for d in shape):
        example = tuple(DEFAULT_SPATIAL_SIZE if d is None else d for d in shape)
        if name.endswith("size"):  # an input_size: the spatial sizes only
            example = example[:-1]
        raise ValueError(
            f"The model's input shape {tuple([None] + list(model_shape))} has unknown (None) sizes: pass "
            f"`{name}` with the sizes to use, e.g. {name}={example}."
        )
    return tuple(int(d) for d in shape)


def application_input_shape(spec, input_shape, input_tensor, include_top):
    """The shape of a constructor's ``Input``, keras.applications' way.

    From ``input_shape``, ``input_tensor`` (both: they must agree; the
    tensor fills sizes the shape leaves open) or the family default
    (``default_size`` with the top, ``None`` sides without), checked: rank,
    channels_last (a channels-first looking shape is refused with the right
    spelling), positive channels, sizes at least ``spec.min_size``.

    Args:
        spec: the variant's ``ModelSpec``.
        input_shape: the constructor's ``input_shape`` (tuple, list or
            ``TensorShape``) or None.
        input_tensor: the constructor's ``input_tensor`` or None.
        include_top: the constructor's ``include_top``.

    Returns:
        The shape without batch (``None`` for open sizes).

    Raises:
        TypeError: ``input_shape`` not a sequence, ``input_tensor`` not a
            symbolic Keras tensor, non-int sizes.
        ValueError: wrong rank, channels-first, bad channels, too small,
            shape and tensor disagree.

    Example:
    >>> application_input_shape(keras_convzoo.get_spec("resnext50_32x4d"), None, None, include_top=False)
    (None, None, 3)
    """
    ranks = sorted({d + 1 for d in spec.accepted_spatial_dims or (spec.spatial_dims,)})
    wanted = " or ".join(str(r) for r in ranks)
    if input_shape is not None:
        if hasattr(input_shape, "as_list"):  # a tf.TensorShape
            input_shape = tuple(input_shape.as_list())
        if not isinstance(input_shape, (tuple, list)):
            raise TypeError(
                f"`input_shape` must be a tuple of {wanted} entries (spatial sizes, channels). "
                f"Received: input_shape={input_shape!r}"
            )
        input_shape = tuple(input_shape)
        if len(input_shape) not in ranks:
            raise ValueError(
                f"`input_shape` must have {wanted} entries (spatial sizes and the channels, "
                f"channels_last) for {spec.entrypoint}. Received: input_shape={input_shape}"
            )
    if input_tensor is None:
        if input_shape is None:
            return spec.input_shape_at(spec.default_size if include_top else None)
        _check_application_shape(spec, input_shape, "input_shape", f"input_shape={input_shape}")
        return input_shape
    full_shape = _tensor_shape(spec, input_tensor, ranks)
    tensor_shape = full_shape[1:]
    received = f"input_tensor with shape {full_shape}"
    if input_shape is not None:
        if len(input_shape) != len(tensor_shape) or any(
            a is not None and b is not None and a != b for a, b in zip(input_shape, tensor_shape)
        ):
            raise ValueError(
                f"`input_shape` contradicts `input_tensor` for {spec.entrypoint}: the tensor's shape without the "
                f"batch axis is {tensor_shape}; pass input_tensor alone, or an input_shape with the same sizes "
                f"(None for any). Received: input_shape={input_shape}, {received}"
            )
        # the tensor is the model's input; the shape fills in sizes the tensor leaves open
        tensor_shape = tuple(t if t is not None else s for t, s in zip(tensor_shape, input_shape))
    _check_application_shape(spec, tensor_shape, "input_tensor", received)
    return tensor_shape


def _tensor_shape(spec, input_tensor, ranks):
    """``input_tensor``'s shape with the batch axis, as a tuple, after checking it is a tensor of a wanted rank."""
    shape = getattr(input_tensor, "shape", None)
    if shape is None or (not LEGACY_KERAS and not is_keras_tensor(input_tensor)):
        raise TypeError(
            "`input_tensor` must be a symbolic Keras tensor (keras.Input(...) or a layer's output). "
            f"Received: input_tensor of type {type(input_tensor).__name__}"
        )
    try:
        shape = tuple(None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape))
    except (TypeError, ValueError):
        raise ValueError(f"`input_tensor` must have a known rank. Received: input_tensor with shape {shape}") from None
    tensor_ranks = [r + 1 for r in ranks]
    if len(shape) not in tensor_ranks:
        expected = " or ".join(f"{r} {_TENSOR_LAYOUTS[r]}" for r in tensor_ranks)
        raise ValueError(
            f"`input_tensor` must have rank {expected} for {spec.entrypoint}. "
            f"Received: input_tensor with shape {shape} (rank {len(shape)})"
        )
    return shape


def looks_channels_first(shape):
    """Whether a shape without batch axis looks channels-first: ``(3, 224, 224)``, ``(1, 784)``, ``(3, None, None)``.

    The first entry is a usual channel count (1 or 3), the last is no usual
    one (None or more than 4) and no other spatial size is 4 or less.

    Example:
    >>> looks_channels_first((3, 224, 224))
    True
    """
    first, *middle, channels = shape
    return (
        first in CHANNELS_FIRST_HINTS
        and (channels is None or (isinstance(channels, int) and channels > 4))
        and all(s is None or (isinstance(s, int) and s > 4) for s in middle)
    )


def _check_application_shape(spec, shape, label, received):
    """Checks a shape without batch axis (channels_last, channels, sizes); messages name ``label``."""
    *spatial, channels = shape
    if looks_channels_first(shape):
        moved = tuple(shape[1:]) + (shape[0],)
        if label == "input_shape":
            use = f"{moved}"
        else:
            permute = tuple(range(2, len(shape) + 1)) + (1,)
            use = f"a tensor of shape {(None,) + moved} (keras.layers.Permute({permute}) moves the channels last)"
        raise ValueError(
            f"`{label}` looks channels-first; keras_convzoo models are channels_last: use {use}. Received: {received}"
        )
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"The channel count (last entry of `{label}`) must be a positive int. Received: {received}"
        )
    for size in spatial:
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"Spatial sizes of `{label}` must be ints or None. Received: {received}")
        if size < spec.min_size:
            raise ValueError(f"Input size must be at least {spec.min_size} for {spec.entrypoint}. Received: {received}")


# Layers that leave the value range unchanged at inference (augmentation,
# noise, resizing): skipped while looking for the model's input scaling.
_RANGE_PRESERVING = (
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomCrop",
    "RandomContrast",
    "RandomBrightness",
    "RandomHeight",
    "RandomWidth",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Resizing",
    "CenterCrop",
    "Identity",
    "InputLayer",
)


def _leading_layers(model):
    """The layers applied first to the model's input, nested models and Sequentials flattened."""
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model) or type(layer).__name__ == "Sequential":
            yield from _leading_layers(layer)
        else:
            yield layer


def _affine(layer):
    """``(scale, offset)`` arrays of a Rescaling / Normalization layer, else None."""
    kind = type(layer).__name__
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, "float64").reshape(-1)
        offset = np.asarray(layer.offset, "float64").reshape(-1)
        return scale, offset
    if kind == "Normalization" and not getattr(layer, "invert", False):
        mean = getattr(layer, "mean", None)
        variance = getattr(layer, "variance", None)
        if mean is None or variance is None:
            return None
        mean = np.asarray(mean, "float64").reshape(-1)
        std = np.sqrt(np.maximum(np.asarray(variance, "float64").reshape(-1), 1e-12))
        return 1.0 / std, -mean / std
    return None


def input_scaling(model):
    """The affine map a model applies to its input first: its leading ``Rescaling`` / ``Normalization`` layers.

    Layers that keep the value range at inference (augmentation, dropout,
    resizing) are skipped and nested models entered; the maps of the
    scaling layers met before any other layer are composed.

    Args:
        model: a built Keras model.

    Returns:
        ``(scale, offset, names)``: per-channel (or scalar) float64 arrays such
        that the model computes ``x * scale + offset`` first, and the names of
        the layers composed (empty, with scale 1 and offset 0, when none).

    Example:
    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    >>> input_scaling(model)[2]
    ['rescaling']
    """
    scale, offset, names = np.ones(1), np.zeros(1), []
    for layer in _leading_layers(model):
        if type(layer).__name__ in _RANGE_PRESERVING:
            continue
        affine = _affine(layer)
        if affine is None:
            break
        scale, offset = scale * affine[0], offset * affine[0] + affine[1]
        names.append(layer.name)
    return scale, offset, names


def scales_pixels(scale, offset):
    """Whether ``x * scale + offset`` takes 0-255 pixels to a network's range: 0 and 255 into [-5, 5], 0.5 apart.

    Args:
        scale, offset: arrays from ``input_scaling``.

    Returns:
        A bool.

    Example:
    >>> scales_pixels(np.array([1 / 255]), np.array([0.0])), scales_pixels(np.ones(1), np.zeros(1))
    (True, False)
    """
    low, high = offset, 255.0 * scale + offset
    return bool(np.all(np.abs(low) <= 5.0) and np.all(np.abs(high) <= 5.0) and np.all(np.abs(high - low) >= 0.5))
