"""Fault injection for atomic exports: a full disk, a failing calibration generator, a failing check."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_convzoo import export
from keras_convzoo.backend import keras

pytestmark = pytest.mark.export


def _model():
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(64, 3, name="conv")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_full_disk_leaves_the_good_file_and_no_partial_one(tmp_path):
    # A file-size limit (RLIMIT_FSIZE) smaller than the file makes the write fail with
    # EFBIG, as a full disk fails with ENOSPC: in a child process, so the limit ends with it.
    script = textwrap.dedent(
        f"""
        import os, resource, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_export_faults import _model
        from keras_convzoo import export
        model = _model()
        for name, call in (("m.tflite", export.to_tflite), ("m.onnx", export.to_onnx)):
            good = call(model, os.path.join({str(tmp_path)!r}, name))
            print(name, "good", good.file_size_bytes, flush=True)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        for name, call in (("m.tflite", export.to_tflite), ("m.onnx", export.to_onnx)):
            try:
                call(model, os.path.join({str(tmp_path)!r}, name))
            except OSError as error:
                print(name, "refused", error.errno, flush=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = [line.split() for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr[-2000:]
    sizes = {name: int(size) for name, state, size in lines if state == "good"}
    refused = {name: int(errno) for name, state, errno in lines if state == "refused"}
    assert set(refused) == {"m.tflite", "m.onnx"} and set(refused.values()) == {27}  # EFBIG
    for name, size in sizes.items():  # the good files are untouched, nothing else is left
        assert size > 4096 and os.path.getsize(tmp_path / name) == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.tflite"]


def test_a_failing_calibration_generator_writes_nothing(tmp_path):
    model = _model()
    export.to_tflite(model, tmp_path / "m.tflite")
    before = (tmp_path / "m.tflite").read_bytes()

    def images():
        for i in range(10):
            if i == 3:
                raise RuntimeError("camera disconnected")
            yield np.full((1, 16, 16, 3), 100.0 + i, "float32")

    with pytest.raises(RuntimeError, match="camera disconnected") as info:
        export.to_tflite(model, tmp_path / "m.tflite", quantization="int8", representative_data=images)
    assert "raised while reading `representative_data`" in "".join(getattr(info.value, "__notes__", []))
    assert (tmp_path / "m.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_a_failing_check_over_a_good_file_keeps_it(tmp_path, monkeypatch):
    from keras_convzoo.export import tflite as tflite_lib

    model = _model()
    export.to_tflite(model, tmp_path / "m.tflite", quantization="float16")
    before = (tmp_path / "m.tflite").read_bytes()
    real = tflite_lib.run_tflite
    # A file that swaps two classes: SNR and agreement on real inputs both collapse.
    monkeypatch.setattr(tflite_lib, "run_tflite", lambda path, x, num_threads=None: [
        y[:, ::-1] for y in real(path, x, num_threads)])
    pixels = np.random.default_rng(0).uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    with pytest.raises(export.VerificationError, match=r"snr_db=.* fails snr_db >= 30.*Nothing was written"):
        export.to_tflite(model, tmp_path / "m.tflite", quantization="float16", verification_data=pixels)
    assert (tmp_path / "m.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
