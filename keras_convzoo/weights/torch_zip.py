"""Reading ``torch.save`` checkpoints (the zip format of PyTorch >= 1.6) into numpy arrays, without torch.

A checkpoint is a zip archive holding ``<archive>/data.pkl`` (a pickle of the
saved object, whose tensors refer to their storages by key),
``<archive>/data/<key>`` (the raw bytes of each storage), and
``<archive>/byteorder`` and ``<archive>/version``. The pickle is read with an
unpickler that only knows the few globals a state dict needs (tensor and
parameter rebuild functions, storage types, dtypes and
``collections.OrderedDict``), so a checkpoint cannot run code, like
``torch.load(..., weights_only=True)``.
"""

import collections
import os
import pickle
import zipfile
import zlib

import numpy as np

from keras_convzoo.weights.pretrained import UnreadableFileError

_UNZIP_HINT = "re-save it with torch.save in PyTorch >= 1.6, or as .safetensors"

#: torch dtype name -> numpy dtype of the stored elements (bfloat16 is read as its uint16 bits).
_DTYPES = {
    "float64": "f8",
    "float32": "f4",
    "float16": "f2",
    "bfloat16": "u2",
    "complex128": "c16",
    "complex64": "c8",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint64": "u8",
    "uint32": "u4",
    "uint16": "u2",
    "uint8": "u1",
    "bool": "?",
}

#: Legacy typed storage classes (``torch.FloatStorage``, ...) -> torch dtype name.
_STORAGE_TYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _CheckpointError(ValueError):
    """A ``ValueError`` raised by the unpickler; its message already names the file."""


class _Dtype:
    """Stands for a pickled ``torch.<dtype>`` global."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType:
    """Stands for a pickled storage class; ``dtype`` is ``"uint8"`` for ``torch.storage.UntypedStorage``."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype


class _Storage:
    """A storage read from the archive: its raw bytes, element dtype name and element count."""

    def __init__(self, key, raw, dtype, numel):
        self.key = key
        self.raw = raw
        self.dtype = dtype
        self.numel = numel


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl``, refusing every global that a state dict does not need."""

    def __init__(self, file, path, zip_file, prefix, byteorder):
        super().__init__(file)
        self._path = path
        self._zip = zip_file
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages = {}
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", "uint8"),
            ("torch", "UntypedStorage"): _StorageType("UntypedStorage", "uint8"),
        }
        for name, dtype in _STORAGE_TYPES.items():
            self._allowed[("torch", name)] = _StorageType(name, dtype)
        for name in _DTYPES:
            self._allowed[("torch", name)] = _Dtype(name)

    def _fail(self, message):
        raise _CheckpointError(f"Cannot read the PyTorch checkpoint {self._path!r}: {message}")

    def find_class(self, module, name):
        found = self._allowed.get((module, name))
        if found is None:
            self._fail(
                f"it refers to the global {module}.{name}, which is not allowed (a state dict holds only tensors, "
                "storages, dtypes and OrderedDicts)."
            )
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and _text(pid[0]) == "storage"):
            self._fail(f"unknown persistent id {pid!r} in data.pkl.")
        _, storage_type, key, _location, numel = pid
        key = _text(key)
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
            self._fail(f"malformed storage reference {pid!r} in data.pkl.")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._read_storage(key, storage_type.dtype, numel)
            self._storages[key] = storage
        return storage

    def _read_storage(self, key, dtype, numel):
        member = f"{self._prefix}/data/{key}"
        try:
            raw = self._zip.read(member)
        except KeyError:
            self._fail(f"the storage member {member!r} is missing from the archive.")
        needed = numel * np.dtype(_DTYPES[dtype]).itemsize
        if len(raw) < needed:
            self._fail(f"the storage member {member!r} holds {len(raw)} bytes, fewer than the {needed} it declares.")
        return _Storage(key, raw, dtype, numel)

    def _rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        """``torch._utils._rebuild_tensor_v2``: a tensor of the storage's own dtype."""
        if not isinstance(storage, _Storage):
            self._fail("a tensor is rebuilt from something that is not a storage.")
        return self._tensor(storage, storage.dtype, offset, size, stride, metadata)

    def _rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        """``torch._utils._rebuild_tensor_v3``: a tensor of ``dtype`` over an untyped (byte) storage."""
        if not isinstance(storage, _Storage) or not isinstance(dtype, _Dtype):
            self._fail("a tensor is rebuilt from something that is not a storage and a dtype.")
        return self._tensor(storage, dtype.name, offset, size, stride, metadata)

    def _tensor(self, storage, dtype, offset, size, stride, metadata):
        size, stride = tuple(size), tuple(stride)
        if not (
            _is_int(offset) and offset >= 0 and len(size) == len(stride)
            and all(_is_int(n) and n >= 0 for n in size + stride)
        ):
            self._fail(f"malformed tensor layout (offset {offset!r}, size {size!r}, stride {stride!r}).")
        file_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<" if self._byteorder == "little" else ">")
        itemsize = file_dtype.itemsize
        if storage.dtype == dtype:
            count = storage.numel
        else:  # an untyped storage seen as ``dtype``; its numel counts bytes
            count = storage.numel * np.dtype(_DTYPES[storage.dtype]).itemsize // itemsize
        needed = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if needed > count:
            self._fail(
                f"a tensor of size {size} (offset {offset}, stride {stride}) needs {needed} elements, more than the "
                f"{count} of storage {storage.key!r}."
            )
        flat = np.frombuffer(storage.raw, dtype=file_dtype, count=count)
        view = np.lib.stride_tricks.as_strided(
            flat[offset:] if needed else flat[:0],
            shape=size,
            strides=tuple(s * itemsize for s in stride),
            writeable=False,
        )
        array = view.astype(file_dtype.newbyteorder("="), order="C")  # always a contiguous copy
        if dtype == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        metadata = metadata if isinstance(metadata, dict) else {}
        if metadata.get("conj"):
            array = np.conj(array)
        if metadata.get("neg"):
            array = np.negative(array)
        return array


def _rebuild_parameter(data, *args):
    """``torch._utils._rebuild_parameter`` (and ``_with_state``): a parameter is its data."""
    return data


def read_torch_checkpoint(path):
    """Reads a ``torch.save`` checkpoint into ``{name: numpy array}``, without importing torch.

    The file must be in the zip format that ``torch.save`` writes since
    PyTorch 1.6. Its pickle may only use what a state dict needs, so reading
    an untrusted file cannot run code. A checkpoint that wraps the state dict
    under ``"state_dict"`` or ``"model"`` is unwrapped; values that are not
    tensors (an ``epoch`` count, strings, ...) are dropped. Tensors keep
    their dtype, except bfloat16, which becomes float32; views are
    materialized as contiguous arrays that own their memory.

    Args:
        path: path to a ``.pth``/``.pt``/``.bin`` file written by ``torch.save``.

    Returns:
        A dict of numpy arrays, in the order of the state dict.

    Raises:
        ValueError: naming the file, when it does not exist, is not a zip
            checkpoint (the legacy pre-1.6 format, or a truncated or corrupt
            file), refers to a global other than a tensor, storage, dtype or
            ``OrderedDict``, lacks a storage member, holds a storage shorter
            than a tensor needs, or holds no dict.

    Example:

    >>> state = read_torch_checkpoint("resnet18.pth")
    >>> state["conv1.weight"].shape
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"The PyTorch checkpoint does not exist. Received: {path!r}")
    try:
        with zipfile.ZipFile(path) as zip_file:
            return _read_archive(path, zip_file)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise UnreadableFileError(
            f"{path!r} is not a readable PyTorch zip checkpoint (the legacy pre-1.6 torch.save format, or a truncated "
            f"or corrupt file: {error}); {_UNZIP_HINT}."
        ) from error


def _read_archive(path, zip_file):
    names = zip_file.namelist()
    prefix = names[0].split("/", 1)[0] if names else ""
    if f"{prefix}/data.pkl" not in names:
        raise ValueError(
            f"Cannot read the PyTorch checkpoint {path!r}: the archive has no '<archive>/data.pkl' member."
        )
    byteorder = "little"
    if f"{prefix}/byteorder" in names:
        byteorder = zip_file.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"Cannot read the PyTorch checkpoint {path!r}: unknown byte order {byteorder!r}.")
    with zip_file.open(f"{prefix}/data.pkl") as file:
        unpickler = _StateDictUnpickler(file, path, zip_file, prefix, byteorder)
        try:
            state = unpickler.load()
        except (_CheckpointError, zipfile.BadZipFile, zlib.error):
            raise
        except Exception as error:  # a malformed pickle can fail in many ways
            raise UnreadableFileError(
                f"Cannot read the PyTorch checkpoint {path!r}: data.pkl is not a valid pickle "
                f"({type(error).__name__}: {error})."
            ) from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(
            f"Cannot read the PyTorch checkpoint {path!r}: it holds a {type(state).__name__}, not a state dict."
        )
    return {str(name): value for name, value in state.items() if isinstance(value, np.ndarray)}
