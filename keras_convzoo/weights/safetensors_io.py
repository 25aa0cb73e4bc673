"""Reading ``.safetensors`` files with numpy alone (no torch, no safetensors package).

The format (github.com/huggingface/safetensors): an 8-byte little-endian
header length N, N bytes of JSON mapping each tensor name to its ``dtype``,
``shape`` and ``data_offsets`` (begin, end) in the byte buffer that follows,
and an optional ``__metadata__`` entry of strings.
"""

import json
import os

import numpy as np

from keras_convzoo.weights.pretrained import UnreadableFileError

#: safetensors dtype names -> numpy dtypes (BF16 is widened to float32 on reading).
_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path):
    """Reads a ``.safetensors`` file into ``{name: numpy array}`` without torch.

    The file is memory-mapped; each array is copied out of the map (so the
    file can be removed afterwards). ``BF16`` tensors become float32.

    Args:
        path: the file.

    Returns:
        A dict of numpy arrays in the file's order.

    Raises:
        UnreadableFileError: (a ``ValueError``) naming the file when it is
            truncated, corrupt or not a safetensors file.

    Example:
    >>> state = read_safetensors("model.safetensors")  # doctest: +SKIP
    >>> state["conv1.weight"].shape
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    size = os.path.getsize(path)

    def bad(reason):
        return UnreadableFileError(f"The weights file {path!r} is not a readable .safetensors file ({reason}).")

    if size < 8:
        raise bad(f"{size} bytes")
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if not 2 <= length <= min(_MAX_HEADER, size - 8):
            raise bad(f"header length {length} in a file of {size} bytes: truncated or corrupt")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise bad(f"header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    header.pop("__metadata__", None)
    start = 8 + length
    buffer = np.memmap(path, dtype=np.uint8, mode="r", offset=0, shape=(size,)) if size > start else None
    out = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} lacks dtype, shape or data_offsets") from None
        if dtype not in _DTYPES:
            raise bad(f"tensor {name!r} has dtype {dtype}, none of {sorted(_DTYPES)}")
        numpy_dtype = np.dtype(_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * numpy_dtype.itemsize or begin < 0 or start + end > size:
            raise bad(f"tensor {name!r} needs bytes {begin}..{end} of a {size - start}-byte buffer: truncated")
        data = np.frombuffer(buffer[start + begin:start + end], dtype=numpy_dtype, count=count) if count else \
            np.zeros(0, numpy_dtype)
        array = data.reshape(shape).copy()
        if dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array
    del buffer
    return out
