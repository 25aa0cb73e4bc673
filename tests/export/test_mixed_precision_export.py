"""Exporting a model trained under mixed precision (``export.float32_form``).

The TFLite converter rejects bfloat16 compute ops and tf2onnx has no bfloat16
type, so a model fine-tuned under ``mixed_bfloat16`` (the recipe the training
guide gives for AMX CPUs) failed to export. The exporters now convert its
float32 form (rebuilt with float32 policies, the same float32 weights); these
tests train such a model, export it, and check the files against the
float32 form (the exporters' own tolerance) and against the 16-bit model the
user trained (its predictions, within bfloat16 rounding).
"""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.backend import keras


@pytest.fixture
def global_policy():
    previous = keras.mixed_precision.global_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(previous)


def _brightness_data(n, seed):
    """0-255 images whose class (0, 1, 2) is their brightness band."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    base = 40 + 80 * labels[:, None, None, None]
    images = np.clip(base + rng.normal(0, 20, (n, 32, 32, 3)), 0, 255).astype("float32")
    return images, labels


def _fine_tuned(global_policy, policy):
    """The README's transfer recipe (backbone inside a functional model) built and trained under ``policy``."""
    global_policy(policy)
    keras.utils.set_random_seed(0)
    spec = kcz.get_spec("mobilenetv2_100")
    backbone = kcz.create_model("mobilenetv2_100", input_shape=(32, 32, 3), include_top=False, pooling="avg",
                                **spec.test_overrides)
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for layer in kcz.preprocessing_layers(backbone):
        x = layer(x)
    outputs = keras.layers.Dense(3, activation="softmax", dtype="float32")(backbone(x))
    model = keras.Model(inputs, outputs)
    global_policy("float32")
    images, labels = _brightness_data(96, seed=1)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=16, epochs=3, verbose=0)
    return model


def test_bfloat16_model_exports_to_tflite_and_onnx(global_policy, tmp_path):
    model = _fine_tuned(global_policy, "mixed_bfloat16")
    assert model.layers[-2].layers[3].compute_dtype == "bfloat16"  # the backbone trained in bfloat16
    images, _ = _brightness_data(24, seed=2)
    expected = model.predict(images, verbose=0)

    reports = [export.to_tflite(model, tmp_path / "m.tflite", verification_data=images),
               export.to_onnx(model, tmp_path / "m.onnx", verification_data=images)]
    outputs = [export.run_tflite(tmp_path / "m.tflite", images)[0], export.run_onnx(tmp_path / "m.onnx", images)[0]]
    for report, got in zip(reports, outputs):
        assert report.relative_diff <= export.FP32_MAX_RELATIVE_DIFF  # against the float32 form
        assert len(report.notes) == 1 and "mixed_bfloat16" in report.notes[0] and "float32" in report.notes[0]
        # against what the user's bfloat16 model predicts: bfloat16 rounding (8-bit mantissa) apart
        assert np.abs(got - expected).max() < 0.02
        assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 23 / 24
    assert model.layers[-2].layers[3].compute_dtype == "bfloat16"  # the user's model is left as it was

    int8 = export.to_tflite(model, tmp_path / "m8.tflite", quantization="int8",
                            representative_data=_brightness_data(32, seed=3)[0], verification_data=images)
    assert int8.float_ops == ()


def test_float32_form_rebuilds_every_layer_with_the_same_weights(global_policy):
    model = _fine_tuned(global_policy, "mixed_float16")
    converted, notes = export.float32_form(model)
    every = [converted, *converted._flatten_layers(include_self=False, recursive=True)]
    assert {str(layer.compute_dtype) for layer in every} == {"float32"}
    assert notes and "mixed_float16" in notes[0]
    before, after = model.get_weights(), converted.get_weights()
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    images, _ = _brightness_data(8, seed=4)
    np.testing.assert_allclose(converted.predict(images, verbose=0), model.predict(images, verbose=0), atol=5e-3)


def test_float32_form_keeps_a_float32_model():
    model = kcz.create_model("mobilenetv2_100", input_shape=(32, 32, 3), classes=3,
                             **kcz.get_spec("mobilenetv2_100").test_overrides)
    converted, notes = export.float32_form(model)
    assert converted is model and notes == ()


def test_subclassed_bfloat16_model_is_refused_with_the_way_out(global_policy):
    global_policy("mixed_bfloat16")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    global_policy("float32")
    with pytest.raises(ValueError, match=r"computes in bfloat16 .*subclassed model.*set_global_policy\('float32'\)"):
        export.float32_form(net)
