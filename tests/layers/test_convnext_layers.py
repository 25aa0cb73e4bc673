import math

import numpy as np
import pytest

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers import GELU, LayerScale, StochasticDepth
from keras_convzoo.testing import run_layer_test


def test_layer_scale():
    run_layer_test(LayerScale, {"init_value": 0.5}, (2, 5, 5, 6), (2, 5, 5, 6),
                   expected_num_trainable_weights=1, expected_num_non_trainable_weights=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype("float32")
    np.testing.assert_allclose(LayerScale(1e-6)(x).numpy(), x * 1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="init_value"):
        LayerScale("small")


def test_stochastic_depth_identity_at_inference_and_per_sample_in_training():
    run_layer_test(StochasticDepth, {"rate": 0.3, "seed": 1}, (2, 4, 4, 3), (2, 4, 4, 3),
                   expected_num_trainable_weights=0, run_training_check=False)
    layer = StochasticDepth(0.5, seed=3)
    x = np.ones((4000, 2, 2, 3), "float32")
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    y = layer(x, training=True).numpy()
    per_sample = y.reshape(4000, -1)
    # each sample is either dropped (0) or kept and rescaled (2), as a whole
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))
    assert 0.45 < (per_sample[:, 0] == 0).mean() < 0.55
    np.testing.assert_allclose(y.mean(), 1.0, atol=0.05)
    with pytest.raises(ValueError, match="rate"):
        StochasticDepth(1.0)


def test_gelu_matches_keras_and_converts_to_tflite_builtin():
    run_layer_test(GELU, {}, (2, 7), (2, 7), expected_num_trainable_weights=0, run_training_check=False)
    x = np.linspace(-4, 4, 101, dtype="float32")
    np.testing.assert_allclose(GELU()(x).numpy(), keras.activations.gelu(x, approximate=False), atol=1e-6)
    np.testing.assert_allclose(GELU(approximate=True)(x).numpy(),
                               keras.activations.gelu(x, approximate=True), atol=1e-6)
    fn = tf.function(lambda t: GELU()(t), input_signature=[tf.TensorSpec((None, None), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    content = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    ops = sorted({op["op_name"] for op in Interpreter(model_content=content)._get_ops_details()})
    assert ops == ["GELU"]  # one fused builtin: no ERF, no flex op


def test_gelu_exact_is_the_erf_form_and_equals_keras():
    from keras_convzoo.layers.gelu import gelu_exact

    x = np.linspace(-10, 10, 2001, dtype="float32")
    expected = 0.5 * x.astype("float64") * (1 + np.vectorize(math.erf)(x.astype("float64") / math.sqrt(2)))
    np.testing.assert_allclose(gelu_exact(tf.constant(x)).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(gelu_exact(tf.constant(x)).numpy(), keras.activations.gelu(x, approximate=False),
                               atol=1e-6)
    graph = tf.function(gelu_exact).get_concrete_function(tf.TensorSpec((None,), tf.float32)).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "Erf" in op_types and "Erfc" not in op_types  # tf2onnx maps Erf; it has no Erfc handler


def test_gelu_training_gradient_equals_tensorflows():
    """training=True: the inference values, and the hand-written gradient equals autodiff of tf.nn.gelu."""
    x = tf.constant(np.linspace(-6.0, 6.0, 241, dtype="float32").reshape(1, -1))
    layer = GELU()

    def value_and_grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * tf.cos(x))  # a non-uniform upstream gradient
        return y, tape.gradient(loss, x)

    y_train, g_train = value_and_grad(lambda t: layer(t, training=True))
    y_ref, g_ref = value_and_grad(lambda t: tf.nn.gelu(t, approximate=False))
    np.testing.assert_array_equal(y_train.numpy(), layer(x, training=False).numpy())  # same forward
    np.testing.assert_allclose(y_train.numpy(), y_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(g_train.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-6)
    traced = tf.function(lambda t: value_and_grad(lambda u: layer(u, training=True))[1])
    graph = traced(x)
    np.testing.assert_allclose(graph.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-6)
    ops = [op.type for op in traced.get_concrete_function(x).graph.get_operations()]
    assert ops.count("Erf") == 1 and "Erfc" not in ops  # one erf in the step, kept for the gradient
    from keras_convzoo.layers.gelu import gelu_exact_with_fused_gradient

    with tf.GradientTape() as tape:  # float16 (a mixed_float16 layer's compute dtype) stays float16
        h = tf.cast(x, tf.float16)
        tape.watch(h)
        out = gelu_exact_with_fused_gradient(h)
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, h)
    assert out.dtype == tf.float16 and grad.dtype == tf.float16
    assert np.isfinite(grad.numpy()).all()
