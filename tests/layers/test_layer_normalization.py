"""layers.LayerNormalization: Keras' layer norm with a closed-form gradient in training steps."""

import numpy as np
import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import LayerNormalization
from keras_convzoo.layers.layer_normalization import layer_normalization_layer
from keras_convzoo.ops import layer_norm
from keras_convzoo.testing import random_array, run_layer_test

pytestmark = pytest.mark.skipif(LEGACY_KERAS, reason="layers.LayerNormalization under Keras 3 (tf_keras: Keras' own)")


def _randomized(layer, shape, seed=0):
    layer.build(shape)
    rng = np.random.default_rng(seed)
    layer.gamma.assign(rng.uniform(0.5, 1.5, shape[-1]))
    layer.beta.assign(rng.normal(0, 0.3, shape[-1]))
    return layer


@pytest.mark.parametrize("shape, dtype", [((2, 5, 6, 8), "float32"), ((3, 7, 16), "float32"),
                                          ((2, 4, 4, 8), "mixed_bfloat16")])
def test_training_values_and_gradients_equal_keras(shape, dtype):
    ours = _randomized(LayerNormalization(epsilon=1e-6, dtype=dtype), shape)
    reference = _randomized(keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype), shape)
    x = tf.cast(tf.constant(random_array(shape, seed=1) * 3 + 1), ours.compute_dtype)
    upstream = tf.constant(random_array(shape, seed=2))

    def run(layer, training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
        return [tf.cast(v, "float32").numpy() for v in [y] + tape.gradient(loss, [x, layer.gamma, layer.beta])]

    expected = run(reference, None)
    got = run(ours, True)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * float(np.abs(b).max()))
    assert got[0].dtype == expected[0].dtype
    np.testing.assert_array_equal(ours(x, training=False).numpy(), reference(x).numpy())  # inference: Keras' code


def test_training_step_takes_the_closed_form_only_where_it_applies(monkeypatch):
    calls = []
    real = layer_norm.layer_norm_trainable
    monkeypatch.setattr("keras_convzoo.layers.layer_normalization.layer_norm_trainable",
                        lambda *a: calls.append(1) or real(*a))
    x = tf.constant(random_array((2, 4, 6)))
    LayerNormalization()(x, training=True)
    assert len(calls) == 1
    for layer in (LayerNormalization(axis=1), LayerNormalization(center=False), LayerNormalization(scale=False)):
        layer(x, training=True)  # Keras' code for other axes and without gamma or beta
    LayerNormalization()(x, training=False)
    assert len(calls) == 1
    frozen = LayerNormalization()
    frozen.trainable = False
    frozen(x, training=True)
    assert len(calls) == 1


def test_layer_contract_and_builders():
    run_layer_test(LayerNormalization, {"epsilon": 1e-6}, input_shape=(2, 3, 3, 4), expected_output_shape=(2, 3, 3, 4),
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=0)
    assert type(layer_normalization_layer()) is LayerNormalization
