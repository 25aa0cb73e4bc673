"""layers.Conv2D: Keras' Conv2D whose 1x1 kernels train with a matrix-product kernel gradient."""

import numpy as np
import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import Conv2D
from keras_convzoo.layers.conv2d import conv2d_layer
from keras_convzoo.ops import pointwise
from keras_convzoo.testing import random_array, run_layer_test


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pointwise_gradients_equal_tensorflows(dtype):
    x = tf.cast(tf.constant(random_array((3, 5, 7, 6), seed=1)), dtype)
    w = tf.cast(tf.constant(random_array((1, 1, 6, 4), seed=2)), dtype)
    weights = tf.constant(random_array((3, 5, 7, 4), seed=3))

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(tf.cast(fn(x, w), "float32") * weights)
        return [tf.cast(g, "float32").numpy() for g in tape.gradient(loss, [x, w])]

    expected = grads(lambda a, b: tf.nn.conv2d(a, b, 1, "VALID"))
    got = grads(pointwise.pointwise_conv2d_trainable)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * float(np.abs(b).max()))
    y = pointwise.pointwise_conv2d_trainable(x, w)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(tf.cast(y, "float32").numpy(),
                                  tf.cast(tf.nn.conv2d(x, w, 1, "VALID"), "float32").numpy())


def test_pointwise_rejects_other_kernels():
    with pytest.raises(ValueError, match=r"`kernel` must have shape \(1, 1, in_channels, out_channels\)"):
        pointwise.pointwise_conv2d_trainable(tf.zeros((1, 4, 4, 2)), tf.zeros((3, 3, 2, 2)))


@pytest.mark.skipif(LEGACY_KERAS, reason="layers.Conv2D under Keras 3 (tf_keras builds use Keras' own)")
@pytest.mark.parametrize("kernel, strides, groups, dtype, applies", [
    (1, 1, 1, "mixed_bfloat16", True), (3, 1, 1, "mixed_bfloat16", False), (1, 2, 1, "mixed_bfloat16", False),
    (1, 1, 2, "mixed_bfloat16", False), (1, 1, 1, "float32", False)])
def test_training_step_takes_the_matmul_gradient_only_for_bfloat16_1x1(monkeypatch, kernel, strides, groups, dtype,
                                                                        applies):
    calls = []
    real = pointwise.pointwise_conv2d_trainable
    monkeypatch.setattr("keras_convzoo.layers.conv2d.pointwise_conv2d_trainable",
                        lambda *a: calls.append(1) or real(*a))
    layer = Conv2D(6, kernel, strides=strides, groups=groups, padding="same", activation="relu", dtype=dtype)
    x = tf.cast(tf.constant(random_array((2, 9, 8, 4), seed=4)), layer.compute_dtype)
    layer(x)

    def step(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.square(tf.cast(y, "float32") - 0.1))
        return [tf.cast(v, "float32") for v in [y] + tape.gradient(loss, [x] + layer.trainable_weights)]

    expected = step(False)
    assert not calls
    got = step(True)
    assert len(calls) == int(applies)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tolerance, atol=tolerance * float(np.abs(b).max()))
    calls.clear()
    layer.trainable = False
    step(True)
    assert not calls


def test_layer_contract_and_builders():
    run_layer_test(Conv2D, {"filters": 5, "kernel_size": 1}, input_shape=(2, 6, 6, 3), expected_output_shape=(2, 6, 6, 5),
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=0)
    assert type(conv2d_layer(4, 1)) is (keras.layers.Conv2D if LEGACY_KERAS else Conv2D)


@pytest.mark.skipif(LEGACY_KERAS, reason="layers.Conv2D under Keras 3")
def test_resnext_twin_bfloat16_training_gradients_match_keras_conv(monkeypatch):
    """A mixed_bfloat16 step of ResNeXt's test twin: every gradient equals the one through Keras' own Conv2D path."""
    import keras_convzoo as kcz
    from keras_convzoo.backend import dtype_policy_scope

    spec = kcz.get_spec("resnext50_32x4d")
    with dtype_policy_scope("mixed_bfloat16"):
        model = kcz.create_model("resnext50_32x4d", input_shape=(32, 32, 3), classes=4, classifier_activation=None,
                                 weights=None, **spec.test_overrides)
    pointwise_layers = [layer for layer in model.layers
                        if type(layer) is Conv2D and layer.kernel_size == (1, 1) and layer.strides == (1, 1)]
    assert len(pointwise_layers) >= 4
    x, y = tf.constant(random_array((2, 32, 32, 3), seed=6)), tf.constant([1, 3])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)

    calls = []
    real = pointwise.pointwise_conv2d_trainable
    monkeypatch.setattr("keras_convzoo.layers.conv2d.pointwise_conv2d_trainable",
                        lambda *a: calls.append(1) or real(*a))
    fast = gradients()
    assert len(calls) == len(pointwise_layers)
    monkeypatch.setattr(Conv2D, "_fast_gradient_applies", lambda self, inputs, training: False)
    reference = gradients()
    # bfloat16 rounding of different summation orders: within 3% of each gradient's scale, and highly correlated
    for a, b in zip(fast, reference):
        a, b = a.numpy().ravel(), b.numpy().ravel()
        np.testing.assert_allclose(a, b, atol=3e-2 * float(np.abs(b).max()))
        if b.size > 8 and np.abs(b).max() > 0:
            assert np.corrcoef(a, b)[0, 1] > 0.99
