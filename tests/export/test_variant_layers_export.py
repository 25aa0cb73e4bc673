"""ShiftConv2D, ChannelShuffle/ChannelSplit, SpatialTransformer and ShuffleNetV2 export verified."""

import numpy as np
import onnx  # installed by the `test` extra: a missing onnx fails these tests instead of skipping them
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.backend import keras
from keras_convzoo.layers import ChannelShuffle, ChannelSplit, ShiftConv2D, SpatialTransformer

pytestmark = pytest.mark.export


def _randomize(model, seed=1, scale=0.3):
    """Random weights; BN variances drawn positive (around 1)."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        value = scale * rng.standard_normal(w.shape).astype("float32")
        weights.append(1.0 + np.abs(value) if "variance" in w.name else value)
    model.set_weights(weights)
    return model


def _export_both(model, tmp_path, stem, input_shape=None):
    tfl = export.to_tflite(model, str(tmp_path / f"{stem}.tflite"), input_shape=input_shape, verify=True)
    onx = export.to_onnx(model, str(tmp_path / f"{stem}.onnx"), input_shape=input_shape, verify=True)
    for report in (tfl, onx):
        assert report.relative_diff <= 1e-4, str(report)
    return tfl, onx


def test_shift_conv2d_exports_without_convolutions_for_the_shift(tmp_path):
    inputs = keras.Input((16, 16, 8), name="image")
    x = ShiftConv2D(12, name="shift1")(inputs)
    x = ShiftConv2D(16, strides=2, name="shift2")(x)
    model = _randomize(keras.Model(inputs, x))
    tfl, onx = _export_both(model, tmp_path, "shift")
    assert tfl.input_shape == (1, 16, 16, 8)
    ops = [node.op_type for node in onnx.load(onx.path).graph.node]
    assert ops.count("Conv") == 2, ops  # the two pointwise convs, nothing for the shifts
    assert "Slice" in ops and "Pad" in ops


def test_channel_shuffle_and_split_export_with_dynamic_sizes(tmp_path):
    inputs = keras.Input((None, None, 8), name="image")
    left, right = ChannelSplit(2, name="split")(inputs)
    right = keras.layers.Conv2D(4, 1, name="pw")(right)
    x = keras.layers.Concatenate(name="concat")([left, right])
    x = ChannelShuffle(2, name="shuffle")(x)
    x = ChannelShuffle(4, name="shuffle4")(x)
    model = _randomize(keras.Model(inputs, x))
    _export_both(model, tmp_path, "shuffle", input_shape=(16, 16, 8))
    dynamic = export.to_onnx(model, str(tmp_path / "dyn.onnx"), num_samples=2, verify=True)
    assert dynamic.input_shape == (None, None, None, 8) and dynamic.relative_diff <= 1e-4
    x = np.random.default_rng(2).standard_normal((2, 9, 13, 8)).astype("float32")
    (out,) = export.run_onnx(dynamic.path, x)
    np.testing.assert_allclose(out, model(x).numpy(), atol=1e-5)


def test_spatial_transformer_exports_with_a_fixed_size(tmp_path):
    localization = keras.Sequential(
        [keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
         keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(8, activation="tanh")],
        name="loc",
    )
    inputs = keras.Input((16, 16, 8), name="image")
    layer = SpatialTransformer(localization, output_size=(12, 12), name="stn")
    model = keras.Model(inputs, layer(inputs))
    kernel, bias = layer.affine.get_weights()
    layer.affine.set_weights([0.4 * np.random.default_rng(3).standard_normal(kernel.shape)
                              .astype("float32"), bias + [0.1, 0.2, 0.1, -0.1, 0.0, -0.2]])
    _export_both(model, tmp_path, "stn")


def test_tiny_shufflenet_v2_exports(tmp_path):
    spec = kcz.get_spec("shufflenet_v2_x1_0")
    model = kcz.create_model("shufflenet_v2_x1_0", input_shape=(32, 32, 3), classes=5,
                             classifier_activation=None, **spec.test_overrides)
    _export_both(_randomize(model, scale=0.2), tmp_path, "shufflenet")
