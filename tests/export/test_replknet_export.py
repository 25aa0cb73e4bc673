"""RepLKNet (re-parameterised large kernels) exports, unfused and fused, to TFLite and ONNX."""

import pytest

import keras_convzoo as kcz
from keras_convzoo import export

pytestmark = pytest.mark.export


@pytest.mark.parametrize("fused", [False, True])
def test_tiny_replknet_exports_to_tflite_and_onnx(fused, tmp_path):
    spec = kcz.get_spec("replknet31_base")
    model = kcz.create_model("replknet31_base", input_shape=(None, None, 3), classes=5,
                             classifier_activation=None, **spec.test_overrides)
    if fused:
        model = kcz.deploy.fuse(model)
    tflite = export.to_tflite(model, str(tmp_path / "r.tflite"), input_shape=(64, 64, 3))
    assert tflite.relative_diff <= 1e-4
    onnx = export.to_onnx(model, str(tmp_path / "r.onnx"), input_shape=(64, 64, 3))
    assert onnx.relative_diff <= 1e-4
