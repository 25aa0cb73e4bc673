"""Mixed precision: every family builds, runs and trains under mixed_float16 / mixed_bfloat16.

One tiny twin per family (``spec.family``). The logits must come out in
float32 (the classifier computes in float32, as Keras' mixed-precision guide
asks of the last layer, so softmax / losses are not evaluated in 16 bits),
while the trunk computes in the 16-bit dtype.
"""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.testing import randomize_batch_norms

FAMILY_MODELS = sorted({kcz.get_spec(n).family: n for n in reversed(kcz.list_models())}.values())
POLICIES = ("mixed_float16", "mixed_bfloat16")


@pytest.fixture
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(previous)


def _tiny(name, **kwargs):
    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(32)
    model = kcz.create_model(name, input_shape=shape, **spec.test_overrides, **kwargs)
    return model, shape


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_family_runs_with_float32_logits(policy, name):
    compute = policy.split("_")[1]
    model, shape = _tiny(name, classes=5, classifier_activation=None)
    assert model.dtype_policy.name == policy
    # the trunk computes in 16 bits, its variables stay float32
    assert all(w.dtype == "float32" for w in model.weights)
    convs = [layer for layer in model.layers if layer.weights and layer.name != "predictions"]
    assert convs and all(layer.compute_dtype == compute for layer in convs)

    # Random BN statistics: fresh BNs are identities and zero-initialised residual branches stay silent, which
    # leaves some tiny twins with near-constant logits of ~0.02 (an all-zero output would be "close" to them).
    randomize_batch_norms(model, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, size=(4,) + shape).astype("float32")
    logits = model(x, training=False)
    assert logits.dtype.name == "float32", f"logits are {logits.dtype.name} under {policy}"
    logits = np.asarray(logits)
    assert logits.shape == (4, 5) and np.all(np.isfinite(logits))

    # close to the float32 model with the same weights (16-bit activations)
    keras.mixed_precision.set_global_policy("float32")
    reference, _ = _tiny(name, classes=5, classifier_activation=None)
    reference.set_weights(model.get_weights())
    expected = np.asarray(reference(x, training=False))
    scale = float(np.max(np.abs(expected)))
    assert scale > 0.5, f"degenerate float32 reference (max |logit| {scale:.3g})"
    # Relative to the logits' own scale. Measured max |diff| / max |logit| over the 8 family twins (4 inputs):
    # float16 <= 0.0035, bfloat16 (8 mantissa bits) <= 0.043 (RepLKNet; the others <= 0.016).
    tolerance = 0.01 if compute == "float16" else 0.1
    error = float(np.max(np.abs(logits - expected)))
    assert error <= tolerance * scale, f"max |diff| {error:.4g} > {tolerance} x max |logit| {scale:.4g}"
    # and the same pattern over classes and inputs (measured >= 0.9998): a constant, zero or shuffled output fails
    correlation = float(np.corrcoef(logits.ravel(), expected.ravel())[0, 1])
    assert correlation >= 0.999, f"correlation with the float32 logits {correlation:.5f}"


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_training_step_with_loss_scaling(policy):
    model, shape = _tiny(FAMILY_MODELS[0], classes=3, classifier_activation="softmax")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", jit_compile=False)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(4,) + shape).astype("float32")
    y = rng.integers(0, 3, size=(4,))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(np.any(b != w.numpy()) for b, w in zip(before, model.trainable_weights))
    assert str(model.predict(x, verbose=0).dtype) == "float32"
