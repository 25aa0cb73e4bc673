"""RepLKNet (re-parameterised large kernels) exports, unfused and fused, to TFLite and ONNX."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.testing import random_array, randomize_batch_norms

pytestmark = pytest.mark.export


def _assert_file_matches(run, path, x, expected):
    """The written file, run on its own (not the exporter's check), gives the Keras outputs within 1e-4 relative."""
    (got,) = run(path, x)
    assert got.shape == expected.shape
    error, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
    assert scale > 0 and error <= 1e-4 * scale, f"{path}: max |diff| {error:.3g}, max |Keras output| {scale:.3g}"


@pytest.mark.parametrize("fused", [False, True])
def test_tiny_replknet_exports_to_tflite_and_onnx(fused, tmp_path):
    spec = kcz.get_spec("replknet31_base")
    original = kcz.create_model("replknet31_base", input_shape=(None, None, 3), classes=5,
                                classifier_activation=None, **spec.test_overrides)
    # Fresh BNs are identities (and zero-init residual branches silent): a BN folded wrongly, or not at all,
    # would not show. Random statistics make each BN a distinct affine map.
    randomize_batch_norms(original, seed=3)
    model = kcz.deploy.fuse(original) if fused else original
    tflite = export.to_tflite(model, str(tmp_path / "r.tflite"), input_shape=(64, 64, 3))
    assert tflite.relative_diff <= 1e-4
    onnx = export.to_onnx(model, str(tmp_path / "r.onnx"), input_shape=(64, 64, 3))
    assert onnx.relative_diff <= 1e-4
    # Each file against the unfused Keras model (so the fused files check the fusion too), on other inputs.
    x = random_array((3, 64, 64, 3), seed=7)
    expected = original(x, training=False).numpy()
    assert float(expected.std()) > 0.1
    _assert_file_matches(export.run_tflite, tflite.path, x, expected)
    _assert_file_matches(export.run_onnx, onnx.path, x, expected)
