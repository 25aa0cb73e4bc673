"""layers.BatchNormalization: Keras 3's layer with TensorFlow's fused kernel in training steps.

The reference is ``keras.layers.BatchNormalization`` itself with the same
weights: outputs, gradients (input, gamma, beta) and moving statistics after
a training step must match it; every other path is Keras' own code.
"""

import numpy as np
import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import BatchNormalization
from keras_convzoo.testing import random_array, run_layer_test

pytestmark = pytest.mark.skipif(LEGACY_KERAS, reason="with tf_keras the class is tf_keras' own (fused already)")


def _pair(shape, **kwargs):
    """Keras' layer and ours, built on ``shape``, with the same non-trivial gamma and beta."""
    layers = keras.layers.BatchNormalization(**kwargs), BatchNormalization(**kwargs)
    for layer in layers:
        layer.build(shape)
        channels = layer.moving_mean.shape[0]
        if layer.scale:
            layer.gamma.assign(np.linspace(0.5, 2.0, channels))
        if layer.center:
            layer.beta.assign(np.linspace(-1.0, 1.0, channels))
    return layers


def _step(layer, x, training=True, mask=None):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training) if mask is None else layer(x, training=training, mask=mask)
        loss = tf.reduce_sum(y * tf.sin(y))  # a loss whose gradient depends on y
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y.numpy(), [g.numpy() for g in grads], layer.moving_mean.numpy(), layer.moving_variance.numpy()


def _assert_same(reference, got):
    (y0, g0, m0, v0), (y1, g1, m1, v1) = reference, got
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-5 * np.abs(y0).max())
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5 * np.abs(a).max())
    np.testing.assert_allclose(m1, m0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v1, v0, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((8, 12, 10, 16), {}),
        ((8, 12, 10, 16), {"epsilon": 1e-5, "momentum": 0.9}),  # timm's
        ((16, 24), {}),  # Dense features
        ((4, 20, 12), {"center": False}),  # 1D (CCNN)
        ((2, 5, 6, 7, 8), {"scale": False}),  # 3D
        ((1, 3, 3, 4), {}),  # 9 values per channel
    ],
)
def test_training_step_equals_keras(shape, kwargs):
    x = tf.constant(random_array(shape) * 3.0 + 1.0)
    keras_layer, ours = _pair(shape, **kwargs)
    assert ours._fused_applies(x, True, None)
    _assert_same(_step(keras_layer, x), _step(ours, x))


def test_the_fused_kernel_runs_in_a_training_step():
    layer = BatchNormalization()
    x = tf.constant(random_array((4, 6, 6, 8)))
    layer.build(x.shape)
    graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    inference = tf.function(lambda t: layer(t, training=False)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" not in {op.type for op in inference.get_operations()}


@pytest.mark.parametrize("case", ["inference", "frozen", "mask", "axis1", "renorm"])
def test_other_paths_are_keras_own(case):
    shape = (4, 6, 5, 8)
    x = tf.constant(random_array(shape))
    kwargs = {"axis": 1} if case == "axis1" else {"renorm": True} if case == "renorm" else {}
    keras_layer, ours = _pair(shape, **kwargs)
    for layer in (keras_layer, ours):
        layer.trainable = case != "frozen"
        layer.moving_mean.assign(np.linspace(-0.3, 0.3, layer.moving_mean.shape[0]))
    mask = tf.constant(random_array(shape[:-1]) > 0) if case == "mask" else None
    training = case != "inference"
    assert not ours._fused_applies(x, training, mask)
    reference, got = _step(keras_layer, x, training, mask), _step(ours, x, training, mask)
    np.testing.assert_array_equal(got[0], reference[0])
    np.testing.assert_array_equal(got[2], reference[2])


def test_mixed_bfloat16_keeps_keras_dtypes():
    policy = keras.DTypePolicy("mixed_bfloat16")
    keras_layer = keras.layers.BatchNormalization(dtype=policy)
    ours = BatchNormalization(dtype=policy)
    x = tf.cast(tf.constant(random_array((4, 6, 6, 8))), "bfloat16")
    y0, y1 = keras_layer(x, training=True), ours(x, training=True)
    assert y1.dtype == y0.dtype == tf.bfloat16 and ours.moving_mean.dtype == keras_layer.moving_mean.dtype
    np.testing.assert_allclose(tf.cast(y1, "float32").numpy(), tf.cast(y0, "float32").numpy(), atol=2e-2)
    # bfloat16 goes into the fused kernel uncast: statistics still in float32 (Keras casts the input to float32)
    np.testing.assert_allclose(ours.moving_mean.numpy(), keras_layer.moving_mean.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.moving_variance.numpy(), keras_layer.moving_variance.numpy(), rtol=1e-5)
    grads = []
    for layer in (keras_layer, ours):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), "float32") * random_array((4, 6, 6, 8), seed=9))
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for g0, g1 in zip(*grads):
        assert g1.dtype == g0.dtype
        scale = float(np.abs(tf.cast(g0, "float32").numpy()).max())
        np.testing.assert_allclose(tf.cast(g1, "float32").numpy(), tf.cast(g0, "float32").numpy(), atol=2e-2 * scale)
    casts = [op.type for op in tf.function(lambda t: ours(t, training=True)).get_concrete_function(x).graph
             .get_operations() if op.type == "Cast" and op.inputs[0].dtype == tf.bfloat16]
    assert not casts  # no bfloat16 -> float32 pass over the input


def test_plain_bfloat16_policy_trains_as_keras():
    """Under a plain "bfloat16" policy (keras-hub's dtype="bfloat16") the moving statistics are bfloat16 variables:
    the fused path updates them as Keras' layer does (it raised a float32 / bfloat16 type error)."""
    keras_layer, ours = (cls(dtype="bfloat16", momentum=0.5) for cls in (keras.layers.BatchNormalization,
                                                                         BatchNormalization))
    x = tf.cast(tf.constant(random_array((4, 6, 6, 8)) * 3.0 + 1.0), "bfloat16")
    y0, y1 = keras_layer(x, training=True), ours(x, training=True)
    assert y1.dtype == y0.dtype == tf.bfloat16 and ours.moving_mean.dtype == keras_layer.moving_mean.dtype == "bfloat16"
    np.testing.assert_allclose(tf.cast(y1, "float32").numpy(), tf.cast(y0, "float32").numpy(), atol=5e-2)
    for mine, theirs in ((ours.moving_mean, keras_layer.moving_mean), (ours.moving_variance, keras_layer.moving_variance)):
        got, expected = (tf.cast(v, "float32").numpy() for v in (mine, theirs))
        assert np.abs(expected - (1.0 if mine is ours.moving_variance else 0.0)).max() > 0.1  # moved from the initial values
        np.testing.assert_allclose(got, expected, rtol=2e-2, atol=1e-2)


def test_layer_contract():
    run_layer_test(BatchNormalization, {"epsilon": 1e-5, "momentum": 0.9}, (2, 5, 5, 6), (2, 5, 5, 6),
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=2)


def test_models_train_with_it():
    # Every BN of the registered families is this class (the fused training step applies to all of them).
    import keras_convzoo as kcz

    for name in ("resnext50_32x4d", "mobilenetv2_100", "replknet31_base", "ccnn_4_140"):
        spec = kcz.get_spec(name)
        model = kcz.create_model(name, input_shape=spec.input_shape_at(max(32, spec.min_size)), **spec.test_overrides)
        norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(type(layer) is BatchNormalization for layer in norms), name
