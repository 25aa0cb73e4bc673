"""CCNN leaves Keras through its fused form: generated kernels baked, no kernel network in the graph."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export

pytestmark = pytest.mark.export


def _assert_file_matches(run, path, x, expected):
    """The written file, run on its own (not the exporter's check), gives the Keras outputs within 1e-4 relative."""
    (got,) = run(path, x)
    assert got.shape == expected.shape
    error, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
    assert scale > 0 and error <= 1e-4 * scale, f"{path}: max |diff| {error:.3g}, max |Keras output| {scale:.3g}"


@pytest.mark.parametrize("input_shape, export_shape", [((None, None, 3), (32, 32, 3)), ((None, 2), (96, 2))])
def test_fused_ccnn_exports_to_tflite_and_onnx(input_shape, export_shape, tmp_path):
    model = kcz.CCNN(input_shape=input_shape, classes=5, classifier_activation=None, depth=2, width=12,
                     kernel_hidden=8, kernel_size=64 if len(input_shape) == 2 else 9, mask_init=0.4, seed=0)
    fused = kcz.deploy.fuse(model)
    assert not any(hasattr(layer, "kernel_network") for layer in fused.layers)  # kernels baked
    x = np.random.default_rng(0).standard_normal((2,) + export_shape).astype("float32")
    np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), atol=1e-4)
    tflite = export.to_tflite(fused, str(tmp_path / "c.tflite"), input_shape=export_shape)
    assert tflite.relative_diff <= 1e-4
    onnx = export.to_onnx(fused, str(tmp_path / "c.onnx"), input_shape=export_shape)
    assert onnx.relative_diff <= 1e-4
    # the files against the unfused model, on other inputs than the exporter's
    expected = model(x).numpy()
    _assert_file_matches(export.run_tflite, tflite.path, x, expected)
    _assert_file_matches(export.run_onnx, onnx.path, x, expected)


@pytest.mark.parametrize("input_shape, export_shape", [((None, None, 3), (32, 32, 3)), ((None, 2), (96, 2))])
def test_unfused_ccnn_is_baked_at_export_and_says_so(input_shape, export_shape, tmp_path):
    # Unfused, the kernel networks and FFT convolutions do not convert (tf2onnx: LowerBound/RFFT);
    # the exporters bake the kernels themselves and check the file against the unfused model.
    model = kcz.CCNN(input_shape=input_shape, classes=5, classifier_activation=None, depth=2, width=12,
                     kernel_hidden=8, kernel_size=64 if len(input_shape) == 2 else 9, mask_init=0.4, seed=0)
    note = "continuous kernels of 3 layers baked with keras_convzoo.deploy.fuse"
    x = np.random.default_rng(1).standard_normal((2,) + export_shape).astype("float32")
    expected = model(x).numpy()
    for report, run in (
        (export.to_tflite(model, str(tmp_path / "c.tflite"), input_shape=export_shape), export.run_tflite),
        (export.to_onnx(model, str(tmp_path / "c.onnx"), input_shape=export_shape), export.run_onnx),
    ):
        assert len(report.notes) == 1 and report.notes[0].startswith(note), report.notes
        assert report.relative_diff <= 1e-4 and report.num_samples == export.DEFAULT_NUM_SAMPLES
        _assert_file_matches(run, report.path, x, expected)
    assert any(hasattr(layer, "kernel_network") for layer in model.layers)  # the user's model is untouched
