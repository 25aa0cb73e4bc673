"""ConvNeXt (where keras.applications' ONNX export writes an invalid file) exports cleanly."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.testing import random_array

pytestmark = pytest.mark.export


def _assert_file_matches(run, path, x, expected):
    """The written file, run on its own (not the exporter's check), gives the Keras outputs within 1e-4 relative."""
    (got,) = run(path, x)
    assert got.shape == expected.shape
    error, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
    assert scale > 0 and error <= 1e-4 * scale, f"{path}: max |diff| {error:.3g}, max |Keras output| {scale:.3g}"


def test_tiny_convnext_exports_to_tflite_and_onnx(tmp_path):
    spec = kcz.get_spec("convnext_tiny")
    model = kcz.create_model("convnext_tiny", input_shape=(None, None, 3), classes=5,
                             classifier_activation=None, **spec.test_overrides)
    tflite = export.to_tflite(model, str(tmp_path / "c.tflite"), input_shape=(64, 64, 3))
    assert tflite.relative_diff <= 1e-4
    onnx = export.to_onnx(model, str(tmp_path / "c.onnx"), input_shape=(64, 64, 3))
    assert onnx.relative_diff <= 1e-4
    x = random_array((3, 64, 64, 3), seed=7)  # not the exporter's verification inputs
    expected = model(x, training=False).numpy()
    assert float(expected.std()) > 0.1  # the logits vary: a constant file would not pass
    _assert_file_matches(export.run_tflite, tflite.path, x, expected)
    _assert_file_matches(export.run_onnx, onnx.path, x, expected)
