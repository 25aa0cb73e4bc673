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

    No format needs torch or any package beyond numpy: ``.safetensors`` is
    read by ``read_safetensors`` (memory-mapped; bfloat16 becomes float32).
    ``.pth``/``.pt``/``.bin`` are ``torch.save`` zip checkpoints
    (PyTorch >= 1.6), read by ``read_torch_checkpoint``: their pickle may only
    hold tensors, so an untrusted file cannot run code (like ``torch.load``
    with ``weights_only=True``); a checkpoint that wraps the state dict under
    ``"state_dict"`` or ``"model"`` is unwrapped, non-tensor values are
    dropped and bfloat16 becomes float32. Keys of an ``.npz`` saved
    with a ``state/`` prefix lose it; other arrays of an ``.npz`` (e.g. an
    ``input`` or ``output`` kept beside the weights) are dropped when the
    prefix is used.

    Args:
        path: file path.

    Returns:
        A dict of numpy arrays.

    Raises:
        ValueError: unknown suffix, missing file, a truncated or corrupt
            file (naming it), or a ``.pth``/``.pt``/``.bin`` file that refers
            to a global other than a tensor's (see ``read_torch_checkpoint``).
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
        from keras_convzoo.weights.safetensors_io import read_safetensors

        return read_safetensors(path)
    if path.endswith((".pth", ".pt", ".bin")):
        from keras_convzoo.weights.torch_zip import read_torch_checkpoint

        return read_torch_checkpoint(path)
    raise ValueError(f"State dict files must end with one of {STATE_DICT_SUFFIXES}. Received: {path!r}")
