"""MobileNetV2 equals keras.applications.MobileNetV2 once weights are copied across."""

import numpy as np
import pytest

import keras
from keras_convzoo.backend import LEGACY_KERAS

import keras_convzoo as kcz

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(LEGACY_KERAS, reason="compares with Keras 3's keras.applications"),
]
ALPHAS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]


def _copy_with_random_statistics(source, target):
    """Copies weights in graph order, randomising BN statistics so they matter."""
    rng = np.random.default_rng(0)
    assert len(source.weights) == len(target.weights)
    for src, dst in zip(source.weights, target.weights):
        assert tuple(src.shape) == tuple(dst.shape), (src.path, dst.path)
        value = np.array(src)
        if "moving_mean" in src.path or "beta" in src.path:
            value = rng.normal(0, 0.1, value.shape).astype("float32")
        elif "moving_variance" in src.path or "gamma" in src.path:
            value = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        src.assign(value)
        dst.assign(value)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_parity_with_keras_applications(alpha):
    inputs = np.random.default_rng(1).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    for size in (96, 128):
        ref = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None)
        ours = kcz.MobileNetV2(input_shape=(size, size, 3), alpha=alpha)
        assert ours.count_params() == ref.count_params()
        _copy_with_random_statistics(ref, ours)
        x = inputs[:, :size, :size]
        expected = ref(x, training=False).numpy()
        np.testing.assert_allclose(ours(x, training=False).numpy(), expected, atol=1e-5, rtol=0)
        assert expected.std() > 1e-5  # not a flat output


@pytest.mark.parametrize("alpha", [0.5, 1.4])
def test_parity_without_top_dynamic_odd_size(alpha):
    ref = keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=alpha, include_top=False,
                                         weights=None, pooling="avg")
    ours = kcz.MobileNetV2(input_shape=(None, None, 3), alpha=alpha, include_top=False, pooling="avg")
    _copy_with_random_statistics(ref, ours)
    for hw in [(64, 64), (97, 131)]:
        x = np.random.default_rng(2).uniform(-1, 1, (1,) + hw + (3,)).astype("float32")
        np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), atol=1e-5, rtol=0)
