"""read_torch_checkpoint reads torch.save zip files like torch.load(weights_only=True) does, without torch.

The reference files are written by torch in a subprocess (torch never loads
next to TensorFlow): each ``<name>.pth`` comes with ``<name>.npz``, the arrays
that torch itself gives for it (bfloat16 converted to float32 by torch).
"""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_convzoo.weights import read_state_dict
from keras_convzoo.weights.torch_zip import read_torch_checkpoint

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("_weights_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)

#: Run by the torch interpreter with the output folder as argument.
TORCH_SCRIPT = r'''
import os, pickle, sys, zipfile
from collections import OrderedDict
import numpy as np
import torch
import torchvision

out = sys.argv[1]
torch.manual_seed(0)


def expected(tensors):
    return {k: (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
            for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def save(name, obj, tensors):
    torch.save(obj, os.path.join(out, name + ".pth"))
    np.savez(os.path.join(out, name + ".npz"), **expected(tensors))


resnet = torchvision.models.resnet18(weights=None).state_dict()
save("resnet18", resnet, resnet)

base = torch.arange(24, dtype=torch.float32)
matrix = torch.randn(3, 5)
dtypes = OrderedDict([
    ("f16", torch.randn(4, 3).half()),
    ("bf16", torch.randn(3, 7).bfloat16()),
    ("bf16_view", torch.randn(4, 6).bfloat16()[:, ::2].t()),
    ("f64", torch.randn(2, 2, dtype=torch.float64)),
    ("i64", torch.tensor([-(2 ** 40), 0, 7])),
    ("i32", torch.tensor([-5, 2 ** 30], dtype=torch.int32)),
    ("i16", torch.tensor([-300, 300], dtype=torch.int16)),
    ("i8", torch.tensor([-128, 127], dtype=torch.int8)),
    ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
    ("bool", torch.tensor([[True, False], [False, True]])),
    ("transposed", matrix.t()),
    ("strided_slice", torch.randn(6, 8)[1::2, ::3]),
    ("expanded", torch.randn(3, 1).expand(3, 4)),
    ("shared_a", base[2:14].view(3, 4)),
    ("shared_b", base[10:22:2]),
    ("scalar", torch.tensor(2.5)),
    ("count", torch.tensor(7)),
    ("empty", torch.zeros(0, 3)),
    ("param", torch.nn.Parameter(torch.randn(2, 3))),
])
save("dtypes", dtypes, dtypes)
with zipfile.ZipFile(os.path.join(out, "dtypes.pth")) as archive:
    storages = [n for n in archive.namelist() if "/data/" in n]
assert len(storages) == len(dtypes) - 1, storages  # shared_a and shared_b are saved as one storage

small = OrderedDict([("conv.weight", torch.randn(4, 3, 1, 1)), ("bn.num_batches_tracked", torch.tensor(5))])
save("checkpoint", {"state_dict": small, "epoch": 3, "arch": "small", "lr": 0.1}, small)
save("wrapped_model", {"model": small, "optimizer": {"step": 1}}, small)

mixed = OrderedDict([
    ("w", torch.randn(2, 2)), ("epoch", 3), ("note", "x"), ("dtype", torch.float32), ("nested", {"v": torch.ones(1)}),
    ("raw_storage", torch.ones(2).untyped_storage()), ("b", torch.randn(3).to(torch.int32)),
])
save("mixed", mixed, OrderedDict([("w", mixed["w"]), ("b", mixed["b"])]))

floats = OrderedDict([("w", torch.randn(3, 4)), ("b", torch.randn(4)[::2])])
save("floats", floats, floats)

save("tensor_only", torch.randn(3), {})
torch.save({"w": torch.ones(2)}, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(out, "pwned"),))


torch.save({"w": torch.ones(2), "evil": Evil()}, os.path.join(out, "evil.pth"))


class ShortPickler(pickle.Pickler):
    """Declares 4 elements for the storage of a 10-element tensor (and writes 4)."""

    def persistent_id(self, obj):
        if isinstance(obj, torch.storage.TypedStorage):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


buffer = __import__("io").BytesIO()
ShortPickler(buffer, protocol=2).dump({"w": torch.arange(10, dtype=torch.float32)})
with zipfile.ZipFile(os.path.join(out, "short_extent.pth"), "w") as archive:
    archive.writestr("short_extent/data.pkl", buffer.getvalue())
    archive.writestr("short_extent/byteorder", "little")
    archive.writestr("short_extent/data/0", np.arange(4, dtype="<f4").tobytes())
    archive.writestr("short_extent/version", "3\n")
'''


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """The folder of reference files, written once by torch in a subprocess."""
    return _conftest.run_torch_script(TORCH_SCRIPT, tmp_path_factory.mktemp("torch_zip"))


def _assert_same(got, npz_path):
    with np.load(npz_path) as data:
        want = {name: data[name] for name in data.files}
    assert list(got) == list(want)
    for name, array in want.items():
        assert isinstance(got[name], np.ndarray), name
        assert got[name].dtype == array.dtype, (name, got[name].dtype, array.dtype)
        assert got[name].shape == array.shape, (name, got[name].shape, array.shape)
        np.testing.assert_array_equal(got[name], array, err_msg=name)
        assert got[name].flags.c_contiguous and got[name].flags.writeable, name  # a copy, not the file's bytes


def _rewrite(src, dst, change):
    """Copies the zip ``src`` to ``dst``; ``change(name, data)`` returns new bytes, or None to drop the member."""
    with zipfile.ZipFile(src) as archive_in, zipfile.ZipFile(dst, "w") as archive_out:
        for info in archive_in.infolist():
            data = change(info.filename, archive_in.read(info.filename))
            if data is not None:
                archive_out.writestr(info.filename, data)
    return dst


def test_resnet18_matches_torch(refs):
    got = read_torch_checkpoint(refs / "resnet18.pth")
    _assert_same(got, refs / "resnet18.npz")
    assert len(got) == 122 and got["bn1.num_batches_tracked"].dtype == np.int64
    assert got["bn1.num_batches_tracked"].shape == ()


def test_dtypes_views_and_shared_storages(refs):
    got = read_torch_checkpoint(refs / "dtypes.pth")
    _assert_same(got, refs / "dtypes.npz")
    expected_dtypes = {
        "f16": np.float16, "bf16": np.float32, "f64": np.float64, "i64": np.int64, "i32": np.int32,
        "i16": np.int16, "i8": np.int8, "u8": np.uint8, "bool": np.bool_, "scalar": np.float32,
    }
    for name, dtype in expected_dtypes.items():
        assert got[name].dtype == dtype, name
    assert got["scalar"].shape == () and got["scalar"] == 2.5
    np.testing.assert_array_equal(got["shared_a"], np.arange(2, 14, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(got["shared_b"], np.arange(10, 22, 2, dtype=np.float32))
    assert not np.shares_memory(got["shared_a"], got["shared_b"])
    got["shared_a"][...] = -1  # writable, and the other view of the storage is unaffected
    np.testing.assert_array_equal(got["shared_b"], np.arange(10, 22, 2, dtype=np.float32))


def test_big_endian_archive(refs):
    """A ``byteorder`` of ``big`` means every storage is stored big-endian."""
    def swap(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
        return data

    path = _rewrite(refs / "floats.pth", refs / "floats_big.pth", swap)
    got = read_torch_checkpoint(path)
    _assert_same(got, refs / "floats.npz")
    assert all(array.dtype == np.dtype("=f4") for array in got.values())


@pytest.mark.parametrize("name", ["checkpoint", "wrapped_model"])
def test_wrapped_checkpoint_is_unwrapped(refs, name):
    got = read_torch_checkpoint(refs / f"{name}.pth")
    _assert_same(got, refs / f"{name}.npz")
    assert list(got) == ["conv.weight", "bn.num_batches_tracked"]


def test_non_tensor_values_are_dropped(refs):
    """Ints, strings, dtypes, nested dicts and bare storages in a state dict are not returned."""
    got = read_torch_checkpoint(refs / "mixed.pth")
    _assert_same(got, refs / "mixed.npz")
    assert list(got) == ["w", "b"]


def test_read_state_dict_uses_it(refs):
    _assert_same(read_state_dict(refs / "checkpoint.pth"), refs / "checkpoint.npz")
    _assert_same(read_state_dict(str(refs / "resnet18.pth")), refs / "resnet18.npz")


def test_read_state_dict_does_not_import_torch(refs):
    code = (
        "import json, sys\n"
        "from keras_convzoo.weights.state_dict import read_state_dict\n"
        f"state = read_state_dict({str(refs / 'resnet18.pth')!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'count': len(state),"
        " 'sum': float(state['conv1.weight'].astype('float64').sum())}))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(refs / "resnet18.npz") as data:
        want_sum = float(data["conv1.weight"].astype(np.float64).sum())
    assert report == {"torch": False, "count": 122, "sum": want_sum}


def test_malicious_pickle_is_refused(refs):
    path = refs / "evil.pth"
    with pytest.raises(ValueError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and f"{os.system.__module__}.system" in message and "\n" not in message
    assert not (refs / "pwned").exists()
    with pytest.raises(ValueError, match="system"):
        read_state_dict(path)
    assert not (refs / "pwned").exists()


@pytest.mark.parametrize("name", ["truncated", "legacy", "empty"])
def test_not_a_zip_checkpoint(refs, name):
    path = refs / f"{name}_bad.pth"
    if name == "truncated":
        data = (refs / "resnet18.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "legacy":
        path.write_bytes((refs / "legacy.pth").read_bytes())
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "PyTorch >= 1.6" in message and ".safetensors" in message
    assert "\n" not in message


def test_missing_storage_member(refs):
    path = _rewrite(
        refs / "floats.pth", refs / "missing.pth", lambda name, data: None if name.endswith("/data/1") else data
    )
    with pytest.raises(ValueError, match=r"missing\.pth.*floats/data/1.* missing"):
        read_torch_checkpoint(path)


def test_missing_data_pkl(refs):
    path = _rewrite(
        refs / "floats.pth", refs / "no_pickle.pth", lambda name, data: None if name.endswith("data.pkl") else data
    )
    with pytest.raises(ValueError, match=r"no_pickle\.pth.*data\.pkl"):
        read_torch_checkpoint(path)


def test_storage_shorter_than_declared(refs):
    def cut(name, data):
        return data[:-4] if name.endswith("/data/0") else data

    path = _rewrite(refs / "floats.pth", refs / "short_bytes.pth", cut)
    with pytest.raises(ValueError, match=r"short_bytes\.pth.*holds 44 bytes, fewer than the 48"):
        read_torch_checkpoint(path)


def test_storage_shorter_than_tensor(refs):
    with pytest.raises(ValueError, match=r"short_extent\.pth.*needs 10 elements, more than the 4"):
        read_torch_checkpoint(refs / "short_extent.pth")


def test_not_a_dict(refs):
    with pytest.raises(ValueError, match=r"tensor_only\.pth.*not a state dict"):
        read_torch_checkpoint(refs / "tensor_only.pth")


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_torch_checkpoint(tmp_path / "nothing.pth")


def test_safetensors_read_with_numpy_equal_the_safetensors_package(tmp_path):
    """Our numpy reader against the safetensors package, on a file torch wrote (bf16, f16, i64, bool, 0-d)."""
    script = (
        "import sys, torch\n"
        "from safetensors.torch import save_file\n"
        "g = torch.Generator().manual_seed(0)\n"
        "save_file({'w': torch.randn(3, 4, 5, generator=g), 'h': torch.randn(7, generator=g).half(),\n"
        "           'b': torch.randn(2, 3, generator=g).bfloat16(), 'i': torch.arange(6).reshape(2, 3),\n"
        "           'm': torch.tensor([True, False]), 's': torch.tensor(3.5)}, sys.argv[1])\n"
    )
    path = tmp_path / "x.safetensors"
    result = subprocess.run([_conftest.torch_python(), "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors.numpy import load_file

    from keras_convzoo.weights.safetensors_io import read_safetensors

    ours = read_safetensors(path)
    assert set(ours) == {"w", "h", "b", "i", "m", "s"}
    theirs = {k: v for k, v in load_file(str(path)).items()}
    for key in ("w", "h", "i", "m", "s"):
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
        np.testing.assert_array_equal(ours[key], theirs[key])
    # bfloat16: the file's 16 bits become the upper half of a float32
    assert ours["b"].dtype == np.float32 and ours["b"].shape == (2, 3)
    np.testing.assert_array_equal(ours["b"].view(np.uint32) >> 16, theirs["b"].view(np.uint16))
    np.testing.assert_array_equal(ours["b"].view(np.uint32) & 0xFFFF, 0)

    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=f"{truncated}.*truncated"):
        read_safetensors(truncated)
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=f"{garbage}.*not a readable .safetensors"):
        read_safetensors(garbage)
