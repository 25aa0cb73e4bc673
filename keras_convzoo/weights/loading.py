"""Loading local weight files into a model: all of them or none."""

import os
import re
import warnings

import numpy as np

from keras_convzoo.weights.pretrained import UnreadableFileError


WEIGHT_SUFFIXES = (".weights.h5", ".h5")

class WeightsMismatchError(ValueError):
    """A weights file does not fit a model; the model was left unchanged.

    Attributes:
        layer: name of the first layer found not to match, or None.
        detail: the underlying message.
    """

    def __init__(self, message, layer=None, detail=""):
        super().__init__(message)
        self.layer = layer
        self.detail = detail


def check_weights_path(weights):
    """Validates a ``weights`` argument that is meant to be a local file.

    Returns:
        The path as a str.

    Raises:
        TypeError: when ``weights`` is neither None nor a path.
        ValueError: when the file is missing or is not a ``.weights.h5`` file.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None, 'imagenet', a pretrained tag or the path to a weights file. "
            f"Received: weights={weights!r} of type {type(weights).__name__}"
        )
    path = os.fspath(weights)
    if not path.endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            "`weights` must be None, 'imagenet', a pretrained tag (keras_convzoo.list_pretrained(NAME)) or the path "
            "to a '.weights.h5' file (model.save_weights) or, where the family reads them, a state dict file "
            f"(.safetensors, .pth, .bin, .npz){'' if os.path.exists(path) else '; no such file exists'}. "
            f"Received: weights={path!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"The weights file does not exist. Received: weights={path!r}")
    return path


#: HDF5 attribute of the file root where ``save`` records what a weights file was made for.
METADATA_ATTRIBUTE = "keras_convzoo"


def open_h5(path):
    """Opens an HDF5 file for reading; a truncated or corrupt file raises a ValueError naming it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        reason = str(error).splitlines()[0]
        raise UnreadableFileError(
            f"The weights file {path!r} is not a readable HDF5 file (truncated or corrupt?): {reason}"
        ) from None


def _count_keras3_arrays(path):
    """Number of arrays in a ``.weights.h5`` file of the Keras 3 layout (also written by
    tf_keras for that suffix), or None for the legacy HDF5 layout."""
    import h5py

    with open_h5(path) as f:
        if "layers" not in f:
            return None
        count = []
        f["layers"].visititems(lambda _, obj: count.append(1) if isinstance(obj, h5py.Dataset) else None)
        return len(count)


def read_metadata(path):
    """What a weights file written by ``save`` was made for, or None for other files.

    Args:
        path: a ``.weights.h5`` file.

    Returns:
        A dict with ``name`` (registry name), ``source``, ``tag``,
        ``config`` (the layout: config overrides the model was built with),
        ``classes`` and ``include_top``; None when the file has no record.

    Raises:
        ValueError: naming the file when it is not a readable HDF5 file.

    Example:
    >>> read_metadata("seresnet50.weights.h5")["config"]  # doctest: +SKIP
    {}
    """
    import json

    with open_h5(os.fspath(path)) as f:
        raw = f.attrs.get(METADATA_ATTRIBUTE)
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def save(model, path, metadata):
    """Writes ``model.save_weights`` to ``path`` with a record of what the weights are for, atomically.

    The file is written beside the target under a temporary name, the
    record (``metadata`` as JSON) is added to its root, and it replaces
    ``path`` only once complete: an interrupted write never leaves a partial
    file at ``path``.

    Args:
        model: the model.
        path: target path ending with ``.weights.h5``.
        metadata: JSON-serialisable dict (see ``read_metadata``).

    Returns:
        The path written.

    Example:
    >>> save(model, "m.weights.h5", {"name": "seresnet50", "config": {}, "classes": 1000})  # doctest: +SKIP
    'm.weights.h5'
    """
    import json

    import h5py

    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The weights file must end with '.weights.h5'. Received: path={path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)[:-len('.weights.h5')]}.{os.getpid()}.part.weights.h5")
    try:
        model.save_weights(temporary)
        with h5py.File(temporary, "a") as f:
            f.attrs[METADATA_ATTRIBUTE] = json.dumps(metadata, sort_keys=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _check_finite(path):
    """Refuses a weights file holding NaN or infinite values, naming the first array."""
    import h5py

    problems = []

    def visit(name, obj):
        if not problems and isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and not np.isfinite(obj[()]).all():
            problems.append(name)

    with open_h5(path) as f:
        f.visititems(visit)
    if problems:
        raise WeightsMismatchError(
            f"The weights file {path!r} holds non-finite values (NaN or inf) in {problems[0]!r}. No weight was changed.",
            detail="non-finite",
        )


def load(model, path):
    """Loads a ``.weights.h5`` file into ``model``, or changes nothing.

    Keras 3's ``load_weights`` loads what fits and raises on the first shape
    mismatch, leaving a half-loaded model. This function checks the number
    of arrays first and restores every variable when loading fails.

    Args:
        model: a built ``keras.Model``.
        path: path of a file written by ``model.save_weights``.

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ValueError) naming the first mismatching
            layer, with the model unchanged.

    Example:
    >>> model.save_weights("/tmp/m.weights.h5")
    >>> keras_convzoo.weights.load(model, "/tmp/m.weights.h5")
    """
    path = check_weights_path(path)
    count = _count_keras3_arrays(path)
    _check_finite(path)
    if count is not None and count != len(model.weights):
        raise WeightsMismatchError(
            f"The weights file {path!r} holds {count} arrays but model '{model.name}' has "
            f"{len(model.weights)} weights: it was saved from another architecture "
            "(check include_top, classes and the variant). No weight was changed.",
            detail="array count",
        )
    snapshot = [np.array(v) for v in model.weights]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
    except Exception as error:  # restore, then report
        for variable, value in zip(model.weights, snapshot):
            variable.assign(value)
        detail = str(error)
        match = (
            re.search(r"name=([\w.-]+)", detail)  # Keras 3
            or re.search(r"variable '\s*([\w.-]+)/", detail)  # tf_keras
            or re.search(r"layer[^']*'([\w.-]+)'", detail)
        )
        layer = match.group(1) if match else None
        shapes = re.search(
            r"variable\.shape=\([^)]*\), Received: value\.shape=\([^)]*\)"
            r"|variable shape \([^)]*\), and the assigned value shape \([^)]*\)",
            detail,
        )
        summary = shapes.group(0) if shapes else detail.splitlines()[0][:300]
        raise WeightsMismatchError(
            f"The weights file {path!r} does not fit model '{model.name}'"
            + (f" at layer '{layer}'" if layer else "")
            + f": {summary}. No weight was changed.",
            layer=layer,
            detail=summary,
        ) from error
    return model
