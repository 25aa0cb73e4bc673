"""Loading local weight files into a model: all of them or none."""

import os
import re
import warnings

import numpy as np


WEIGHT_SUFFIXES = (".weights.h5", ".h5")

#: Environment variable naming the directory of cached ImageNet weights.
HOME_ENV = "KERAS_CONVZOO_HOME"


def weights_home():
    """Directory of the cached ImageNet weights: ``$KERAS_CONVZOO_HOME`` or ``~/.keras/convzoo``."""
    return os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".keras", "convzoo")


def imagenet_weights_path(name):
    """Where ``weights="imagenet"`` looks for the weights of registered model ``name``.

    Args:
        name: registry name, e.g. ``"seresnet50"``.

    Returns:
        ``<weights_home()>/<name>.weights.h5`` (the file need not exist).

    Example:
    >>> imagenet_weights_path("convnext_tiny")  # doctest: +SKIP
    '/home/me/.keras/convzoo/convnext_tiny.weights.h5'
    """
    return os.path.join(weights_home(), f"{name}.weights.h5")


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
            "`weights` must be None or the path to a '.weights.h5' file. "
            f"Received: weights={weights!r} of type {type(weights).__name__}"
        )
    path = os.fspath(weights)
    if not path.endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            "`weights` must be None or the path to a '.weights.h5' file "
            f"(saved with model.save_weights). Received: weights={path!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"The weights file does not exist. Received: weights={path!r}")
    return path


def _count_keras3_arrays(path):
    """Number of arrays in a ``.weights.h5`` file of the Keras 3 layout (also written by
    tf_keras for that suffix), or None for the legacy HDF5 layout."""
    import h5py

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return None
        count = []
        f["layers"].visititems(lambda _, obj: count.append(1) if isinstance(obj, h5py.Dataset) else None)
        return len(count)


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
