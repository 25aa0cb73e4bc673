"""Reading PyTorch-style state dicts (name -> array) from .npz, .safetensors, .pth and .bin files."""

import os

import numpy as np

STATE_DICT_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".bin")


def is_state_dict_path(path):
    """True when ``path`` names a state-dict file by its suffix."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(STATE_DICT_SUFFIXES)


def to_numpy_state_dict(state_dict):
    """Returns ``{name: float32/int numpy array}`` from a mapping of arrays or torch tensors."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"`state_dict` must be a mapping of names to arrays. Received: {type(state_dict).__name__}")
    out = {}
    for name, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor, converted without importing torch
            value = value.detach().cpu().numpy()
        out[str(name)] = np.asarray(value)
    return out


def read_state_dict(path):
    """Reads a state dict file into ``{name: numpy array}``.

    ``.npz`` and ``.safetensors`` need no torch (``safetensors`` package for
    the latter); ``.pth``/``.pt``/``.bin`` are read with ``torch.load``
    (``weights_only=True``); a checkpoint that wraps the state dict under
    ``"state_dict"`` or ``"model"`` is unwrapped. Keys of an ``.npz`` saved
    with a ``state/`` prefix lose it; other arrays of an ``.npz`` (e.g. an
    ``input`` or ``output`` kept beside the weights) are dropped when the
    prefix is used.

    Args:
        path: file path.

    Returns:
        A dict of numpy arrays.

    Raises:
        ValueError: unknown suffix or missing file.
        ImportError: naming the package a format needs.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"The state dict file does not exist. Received: {path!r}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            if any(n.startswith("state/") for n in names):
                return {n[len("state/"):]: data[n] for n in names if n.startswith("state/")}
            return {n: data[n] for n in names}
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ImportError("Reading .safetensors needs the `safetensors` package: pip install safetensors") from error
        return load_file(path)
    if path.endswith((".pth", ".pt", ".bin")):
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"Reading {path!r} needs PyTorch (pip install torch); or save the state dict as .npz or .safetensors."
            ) from error
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        return to_numpy_state_dict(state)
    raise ValueError(f"State dict files must end with one of {STATE_DICT_SUFFIXES}. Received: {path!r}")
