import numpy as np
import pytest

from keras_convzoo.backend import keras
from keras_convzoo.blocks import squeeze_excite
from keras_convzoo.layers import SqueezeExcite
from keras_convzoo.testing import run_layer_test


def _numpy_se(x, w1, b1, w2, b2):
    s = x.mean(axis=tuple(range(1, x.ndim - 1)), keepdims=True)
    s = np.maximum(s @ w1 + b1, 0)
    s = 1 / (1 + np.exp(-(s @ w2 + b2)))
    return x * s


@pytest.mark.parametrize("shape", [(2, 10, 16), (2, 6, 7, 16), (1, 3, 4, 5, 16)])
def test_contract_any_rank(shape):
    run_layer_test(
        SqueezeExcite,
        {"ratio": 0.25},
        input_shape=shape,
        expected_output_shape=shape,
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
    )


def test_matches_numpy_and_rounding():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 64)).astype("float32")
    layer = SqueezeExcite()  # ratio 1/16, divisor 8 -> 8 channels (timm rule)
    layer.build(x.shape)
    assert layer.squeeze_channels == 8
    weights = [np.random.default_rng(i).standard_normal(w.shape).astype("float32") * 0.3
               for i, w in enumerate(layer.get_weights())]
    layer.set_weights(weights)
    np.testing.assert_allclose(layer(x).numpy(), _numpy_se(x, *weights), atol=1e-5)
    plain = SqueezeExcite(ratio=1 / 16, divisor=None)
    plain.build(x.shape)
    assert plain.squeeze_channels == 4


def test_layer_equals_flat_block():
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 32)).astype("float32")
    inputs = keras.Input((6, 6, 32))
    block = keras.Model(inputs, squeeze_excite(inputs, ratio=0.25, divisor=8, name="se"))
    fc1, fc2 = block.get_layer("se_fc1"), block.get_layer("se_fc2")
    rng = np.random.default_rng(3)
    fc1.set_weights([rng.standard_normal(w.shape).astype("float32") for w in fc1.get_weights()])
    fc2.set_weights([rng.standard_normal(w.shape).astype("float32") for w in fc2.get_weights()])
    layer = SqueezeExcite(ratio=0.25, divisor=8)
    layer.build(x.shape)
    (k1, b1), (k2, b2) = fc1.get_weights(), fc2.get_weights()
    layer.set_weights([k1[0, 0], b1, k2[0, 0], b2])
    np.testing.assert_allclose(layer(x).numpy(), block(x).numpy(), atol=1e-5)


def test_hard_sigmoid_gate_and_errors():
    x = np.zeros((1, 4, 4, 8), "float32") + 1.0
    layer = SqueezeExcite(ratio=0.5, gate="hard_sigmoid", bias_initializer="zeros",
                          kernel_initializer="zeros")
    np.testing.assert_allclose(layer(x).numpy(), x * 0.5, atol=1e-6)  # relu6(3)/6
    with pytest.raises(ValueError, match="gate"):
        SqueezeExcite(gate="tanh")
    with pytest.raises(ValueError, match="ratio"):
        SqueezeExcite(ratio=2)
    with pytest.raises(ValueError, match="activation"):
        SqueezeExcite(activation="elu")
