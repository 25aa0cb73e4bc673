"""The inputs an export is verified on: the user's data, or synthetic images in the model's own range.

A file is only as good as its check's inputs. Unit-normal noise is not what a
model fine-tuned on 0-255 photos sees: its float16 and quantized files fail
on noise and pass on its real images. The exporters therefore verify, in this
order of preference, on

1. ``verification_data`` (the user's real inputs),
2. the ``representative_data`` given for int8 calibration,
3. synthetic images in the range the model expects: smooth random images
   (a sum of bilinearly upsampled random grids, like blurred photos) mapped
   to 0-255 pixels when the model scales its own input (``Rescaling`` /
   ``Normalization`` layers at its start, possibly inside a nested model or
   after augmentation layers), to ``preprocess_input``'s output for a
   keras_convzoo model built without them, or to zero mean and unit variance
   otherwise.

``describe`` fields say which one a report used.
"""

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.input_shapes import concrete_input_shape, input_scaling, scales_pixels

#: Synthetic inputs drawn when ``num_samples`` is not given.
DEFAULT_NUM_SAMPLES = 8
#: ``representative_data`` samples the file is checked on when ``num_samples`` is not given.
DEFAULT_REPRESENTATIVE_SAMPLES = 32



class InputRange:
    """What a model's input looks like, as far as its graph tells.

    Attributes:
        kind: ``"pixels"`` (0-255 images: the model scales them itself),
            ``"preprocessed"`` (a keras_convzoo model taking
            ``preprocess_input``'s output), ``"normal"`` (per-channel mean
            and standard deviation, from a ``Normalization`` layer) or
            ``"unknown"`` (zero mean, unit variance).
        mean: per-channel mean for ``"normal"`` (else None).
        std: per-channel standard deviation for ``"normal"`` (else None).
        source: the layers or attribute the range was read from.
    """

    def __init__(self, kind, mean=None, std=None, source=""):
        self.kind = kind
        self.mean = mean
        self.std = std
        self.source = source

    def __repr__(self):
        return f"InputRange({self.kind!r}, source={self.source!r})"

    def describe(self):
        """A short phrase for reports, e.g. ``"0-255 pixels (the model scales them: rescale)"``."""
        if self.kind == "pixels":
            return f"0-255 pixels (the model scales them: {self.source})"
        if self.kind == "preprocessed":
            return f"0-255 pixels through preprocess_input ({self.source})"
        if self.kind == "normal":
            return f"the mean/std of {self.source}"
        return "zero mean, unit variance (no input scaling found in the model)"


def input_range(model):
    """Reads from a model's graph what range its inputs are in.

    The affine maps of the ``Rescaling`` / ``Normalization`` layers at the
    start of the model (augmentation and resizing layers skipped, nested
    models entered) are composed. When they map 0 and 255 into [-5, 5] the
    model takes 0-255 pixels; a ``Normalization`` alone gives a per-channel
    mean and standard deviation. A model built by keras_convzoo without such
    layers takes ``preprocess_input``'s output.

    Args:
        model: a built Keras model.

    Returns:
        An ``InputRange``.

    Example:
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.Rescaling(1 / 255)(inputs)
    >>> input_range(keras.Model(inputs, keras.layers.Conv2D(4, 3)(x))).kind
    'pixels'
    """
    scale, offset, names = input_scaling(model)
    if names:
        if scales_pixels(scale, offset):
            return InputRange("pixels", source=", ".join(names))
        # x * scale + offset ~ N(0, 1)  <=>  x ~ N(-offset / scale, 1 / |scale|)
        safe = np.where(np.abs(scale) < 1e-12, 1e-12, scale)
        return InputRange("normal", mean=-offset / safe, std=1.0 / np.abs(safe), source=", ".join(names))
    name = getattr(model, "convzoo_name", None)
    if name is not None:
        from keras_convzoo.applications import get_spec

        if get_spec(name).preprocessing is not None or getattr(model, "pretrained_cfg", None) is not None:
            return InputRange("preprocessed", source=f"keras_convzoo {name!r}")
    return InputRange("unknown")


def _upsample(grid, shape):
    """Linear interpolation of ``grid`` (``(*g, C)``) to ``(*shape, C)``, one axis at a time."""
    for axis, size in enumerate(shape):
        n = grid.shape[axis]
        if n == size:
            continue
        position = np.linspace(0.0, n - 1.0, size)
        lower = np.floor(position).astype(int)
        upper = np.minimum(lower + 1, n - 1)
        frac_shape = [1] * grid.ndim
        frac_shape[axis] = size
        frac = (position - lower).reshape(frac_shape)
        grid = np.take(grid, lower, axis=axis) * (1.0 - frac) + np.take(grid, upper, axis=axis) * frac
    return grid


def smooth_images(shape, num_samples, seed=0):
    """Seeded synthetic images in [0, 1]: sums of upsampled random grids (blurry photos).

    Args:
        shape: one sample's shape, channels last (any number of spatial axes).
        num_samples: how many.
        seed: seed.

    Returns:
        A float32 array ``(num_samples,) + shape`` with values in [0, 1],
        each image spanning most of that range.

    Example:
    >>> smooth_images((32, 32, 3), 2).shape
    (2, 32, 32, 3)
    """
    rng = np.random.default_rng(seed)
    spatial, channels = tuple(shape[:-1]), shape[-1]
    images = []
    for _ in range(num_samples):
        image = np.zeros(spatial + (channels,))
        cells = 2
        while cells <= max(2, max(spatial, default=2) // 2):
            grid = rng.uniform(-1.0, 1.0, tuple(min(cells, s) for s in spatial) + (channels,))
            image += _upsample(grid, spatial) / cells
            cells *= 2
        low, high = image.min(), image.max()
        images.append((image - low) / max(high - low, 1e-12))
    return np.stack(images).astype("float32")


def synthetic_inputs(model, shape, num_samples, seed=0, dtype="float32"):
    """Seeded synthetic inputs in the model's own range (see ``input_range``).

    Args:
        model: the Keras model.
        shape: one sample's shape (no batch, no ``None``).
        num_samples: how many.
        seed: seed.
        dtype: numpy dtype of the result.

    Returns:
        ``(inputs, description)``: an array ``(num_samples,) + shape`` and a
        phrase saying what they are.
    """
    images = smooth_images(shape, num_samples, seed)
    found = input_range(model)
    if found.kind == "pixels":
        x = images * 255.0
    elif found.kind == "preprocessed":
        from keras_convzoo.applications.imagenet_utils import preprocess_input

        x = np.asarray(preprocess_input(images * 255.0, model))
    else:
        axes = tuple(range(1, images.ndim - 1))
        centred = images - images.mean(axis=axes, keepdims=True)
        x = centred / np.maximum(centred.std(axis=axes, keepdims=True), 1e-6)
        if found.kind == "normal":
            x = x * found.std + found.mean
    return x.astype(dtype), f"{num_samples} synthetic images, {found.describe()}"


def data_samples(data, sample_shape, dtype, argument):
    """Materialises user data (``verification_data`` / ``representative_data``) as a list of batch-1 arrays.

    Args:
        data: an iterable of input arrays or a callable returning one (a
            generator function, a ``tf.data.Dataset``); each item one sample,
            a batch, ``[array]`` or an ``(inputs, targets)`` pair; or one
            array of samples.
        sample_shape: one sample's shape in the exported file (no batch;
            ``None`` for a dynamic dimension, any size then, the same for all).
        dtype: numpy dtype.
        argument: the argument's name, for error messages.

    Returns:
        A non-empty list of arrays of shape ``(1,) + sample_shape``.

    Raises:
        ValueError: for items of another shape, dicts, an empty set or a
            non-iterable; errors raised by the user's generator pass through
            with a note naming the argument.
    """
    source = data() if callable(data) else data
    rank = len(sample_shape)
    if isinstance(source, np.ndarray) or tf.is_tensor(source):
        source = np.asarray(source)
        fits = [source.ndim == n and all(d is None or d == a for d, a in zip(sample_shape, source.shape[n - rank:]))
                for n in (rank, rank + 1)]
        if source.ndim in (rank, rank + 1) and not any(fits):
            hint = ""
            if source.ndim == rank + 1 and tuple(source.shape[2:]) + source.shape[1:2] == tuple(
                    d if d is not None else a for d, a in zip(sample_shape, tuple(source.shape[2:]) + source.shape[1:2])):
                hint = " (it looks channels-first; keras_convzoo models are channels-last)"
            raise ValueError(
                f"`{argument}` has shape {source.shape}; expected samples of shape {tuple(sample_shape)} "
                f"(one, or a batch of them), the input shape of the exported file{hint}."
            )
        source = [source]
    try:
        iterator = iter(source)
    except TypeError:
        raise ValueError(
            f"`{argument}` must be an iterable of input arrays or a callable returning one. "
            f"Received: {type(source).__name__}"
        ) from None
    samples = []
    try:
        items = list(enumerate(iterator))
    except Exception as error:  # the user's generator failed: say which argument it fed
        error.add_note(f"(raised while reading `{argument}`; nothing was written)")
        raise
    for i, item in items:
        if isinstance(item, dict):
            raise ValueError(f"`{argument}` items must be arrays (or `[array]` / `(inputs, targets)`), not dicts.")
        if isinstance(item, (list, tuple)):
            if not item:
                raise ValueError(f"`{argument}` item {i} is empty.")
            item = item[0]
        array = np.asarray(item, dtype=dtype)
        if array.ndim == rank:
            array = array[None]
        fits = array.ndim == rank + 1 and all(d is None or d == a for d, a in zip(sample_shape, array.shape[1:]))
        if not fits:
            hint = ""
            if array.ndim == rank + 1 and tuple(array.shape[1:]) == tuple(sample_shape[-1:]) + tuple(sample_shape[:-1]):
                hint = " (it looks channels-first; keras_convzoo models are channels-last)"
            raise ValueError(
                f"`{argument}` item {i} has shape {tuple(array.shape)}; expected {tuple(sample_shape)} or a "
                f"batch of them, the input shape of the exported file{hint}."
            )
        if samples and array.shape[1:] != samples[0].shape[1:]:
            raise ValueError(
                f"`{argument}` item {i} has shape {tuple(array.shape)}, item 0 {tuple(samples[0].shape)}: "
                "the samples must share one shape."
            )
        samples.extend(array[j : j + 1] for j in range(array.shape[0]))
    if not samples:
        raise ValueError(f"`{argument}` yielded no samples.")
    return samples


def spread(samples, count):
    """``count`` of ``samples`` evenly spread over the list (all of them when fewer)."""
    if count is None or count >= len(samples):
        return list(samples)
    picks = np.linspace(0, len(samples) - 1, count).round().astype(int)
    return [samples[i] for i in sorted(set(picks.tolist()))]


#: ``verification_data=SYNTHETIC`` checks a file on synthetic images in the model's input range even when
#: ``representative_data`` is given (e.g. calibration data that is itself synthetic).
SYNTHETIC = "synthetic"


def verification_inputs(model, sample_shape, dtype, verification_data=None, representative=None,
                        num_samples=None, seed=0):
    """The inputs an exporter checks its file on, and a phrase saying what they are.

    Args:
        model: the Keras model.
        sample_shape: one sample's shape in the file (no batch; a ``None``
            dimension takes the size of ``verification_data``, or
            ``DEFAULT_SPATIAL_SIZE`` for synthetic inputs).
        dtype: numpy dtype.
        verification_data: the user's inputs (see ``data_samples``), None,
            or ``SYNTHETIC`` (synthetic inputs even with ``representative``).
        representative: already materialised calibration samples, or None.
        num_samples: how many to use: None takes every ``verification_data``
            sample, ``DEFAULT_REPRESENTATIVE_SAMPLES`` of the calibration
            samples, or ``DEFAULT_NUM_SAMPLES`` synthetic ones.
        seed: seed of synthetic inputs.

    Returns:
        ``(x, description, real)``: the inputs stacked on the batch axis, a
        phrase for the report, and whether they are the user's data (top-1
        agreement is then meaningful).
    """
    synthetic = isinstance(verification_data, str)
    if synthetic and verification_data != SYNTHETIC:
        raise ValueError(f"`verification_data` must be inputs or {SYNTHETIC!r} (synthetic images in the model's range, "
                         f"even when representative_data is given). Received: verification_data={verification_data!r}")
    if verification_data is not None and not synthetic:
        samples = spread(data_samples(verification_data, sample_shape, dtype, "verification_data"), num_samples)
        return np.concatenate(samples), f"{len(samples)} samples of verification_data", True
    if representative and not synthetic:
        samples = spread(representative, DEFAULT_REPRESENTATIVE_SAMPLES if num_samples is None else num_samples)
        description = f"{len(samples)} samples of representative_data (calibration inputs; verification_data checks held-out ones)"
        return np.concatenate(samples), description, True
    count = DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
    filled = concrete_input_shape(sample_shape, fill=True)
    x, description = synthetic_inputs(model, filled, count, seed, dtype)
    return x, description, False


def check_num_samples(num_samples):
    """Validates ``num_samples`` (a positive int) and returns it as ``int``.

    Raises:
        ValueError: for anything else.
    """
    is_int = isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool)
    if not is_int or num_samples < 1:
        raise ValueError(
            f"`num_samples` must be a positive int. Received: num_samples={num_samples!r}"
        )
    return int(num_samples)
