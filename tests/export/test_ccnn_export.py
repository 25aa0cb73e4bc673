"""CCNN leaves Keras through its fused form: generated kernels baked, no kernel network in the graph."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export

pytestmark = pytest.mark.export


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


@pytest.mark.parametrize("input_shape, export_shape", [((None, None, 3), (32, 32, 3)), ((None, 2), (96, 2))])
def test_unfused_ccnn_is_baked_at_export_and_says_so(input_shape, export_shape, tmp_path):
    # Unfused, the kernel networks and FFT convolutions do not convert (tf2onnx: LowerBound/RFFT);
    # the exporters bake the kernels themselves and check the file against the unfused model.
    model = kcz.CCNN(input_shape=input_shape, classes=5, classifier_activation=None, depth=2, width=12,
                     kernel_hidden=8, kernel_size=64 if len(input_shape) == 2 else 9, mask_init=0.4, seed=0)
    note = "continuous kernels of 3 layers baked with keras_convzoo.deploy.fuse"
    for report in (
        export.to_tflite(model, str(tmp_path / "c.tflite"), input_shape=export_shape),
        export.to_onnx(model, str(tmp_path / "c.onnx"), input_shape=export_shape),
    ):
        assert len(report.notes) == 1 and report.notes[0].startswith(note), report.notes
        assert report.relative_diff <= 1e-4 and report.num_samples == export.DEFAULT_NUM_SAMPLES
    assert any(hasattr(layer, "kernel_network") for layer in model.layers)  # the user's model is untouched
