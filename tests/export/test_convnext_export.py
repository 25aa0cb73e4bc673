"""ConvNeXt (where keras.applications' ONNX export writes an invalid file) exports cleanly."""

import pytest

import keras_convzoo as kcz
from keras_convzoo import export

pytestmark = pytest.mark.export


def test_tiny_convnext_exports_to_tflite_and_onnx(tmp_path):
    spec = kcz.get_spec("convnext_tiny")
    model = kcz.create_model("convnext_tiny", input_shape=(None, None, 3), classes=5,
                             classifier_activation=None, **spec.test_overrides)
    tflite = export.to_tflite(model, str(tmp_path / "c.tflite"), input_shape=(64, 64, 3))
    assert tflite.relative_diff <= 1e-4
    onnx = export.to_onnx(model, str(tmp_path / "c.onnx"), input_shape=(64, 64, 3))
    assert onnx.relative_diff <= 1e-4
