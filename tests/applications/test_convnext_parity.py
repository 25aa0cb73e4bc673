"""ConvNeXt equals keras.applications.ConvNeXt* once weights are copied across."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import LEGACY_KERAS

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(LEGACY_KERAS, reason="compares with Keras 3's keras.applications"),
]


def _copy(reference, ours):
    """Copies in graph order; depthwise kernels change layout; layer scales made O(1)."""
    rng = np.random.default_rng(0)
    assert len(reference.weights) == len(ours.weights)
    for ref, dst in zip(reference.weights, ours.weights):
        value = np.array(ref)
        if "layer_scale" in ref.path:
            value = rng.uniform(0.2, 1.0, value.shape).astype("float32")
        elif "layernorm" in ref.path:
            value = value + rng.normal(0, 0.1, value.shape).astype("float32")
        ref.assign(value)
        if "depthwise_conv" in ref.path and value.ndim == 4:  # (k, k, 1, C) -> (k, k, C, 1)
            value = value.transpose(0, 1, 3, 2)
        assert tuple(value.shape) == tuple(dst.shape), (ref.path, dst.path)
        dst.assign(value)


def test_convnext_tiny_parity_with_and_without_top():
    import keras

    x = np.random.default_rng(1).standard_normal((2, 97, 131, 3)).astype("float32")
    for size in (32, 64):
        ref = keras.applications.ConvNeXtTiny(weights=None, include_preprocessing=False,
                                              input_shape=(size, size, 3))
        ours = kcz.ConvNeXtTiny(input_shape=(size, size, 3))
        assert ours.count_params() == ref.count_params() == 28_589_128
        _copy(ref, ours)
        expected = ref(x[:, :size, :size], training=False).numpy()
        got = ours(x[:, :size, :size], training=False).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert expected.std() > 1e-4
    for pooling in ("avg", "max"):
        ref = keras.applications.ConvNeXtTiny(weights=None, include_top=False, pooling=pooling,
                                              include_preprocessing=False, input_shape=(None, None, 3))
        ours = kcz.ConvNeXtTiny(include_top=False, pooling=pooling, input_shape=(None, None, 3))
        _copy(ref, ours)
        for hw in [(64, 64), (97, 131)]:
            np.testing.assert_allclose(ours(x[:, : hw[0], : hw[1]]).numpy(),
                                       ref(x[:, : hw[0], : hw[1]]).numpy(), atol=1e-4, rtol=0)


def test_include_preprocessing_matches_keras_default():
    import keras

    ref = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3))  # preprocessing on
    ours = kcz.ConvNeXtTiny(input_shape=(32, 32, 3), include_preprocessing=True)
    _copy(ref, ours)
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), atol=1e-4, rtol=0)


def test_plain_feature_map_without_pooling():
    model = kcz.ConvNeXtTiny(include_top=False, input_shape=(None, None, 3),
                             **kcz.get_spec("convnext_tiny").test_overrides)
    assert model.layers[-1].name.endswith("_add")  # no hidden LayerNorm
    assert model(np.zeros((1, 64, 96, 3), "float32")).shape == (1, 2, 3, 32)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["ConvNeXtSmall", "ConvNeXtBase"])
def test_full_size_parity_at_224(entry):
    """Full-size variants at their default 224x224 input (slow: ~90M-parameter copies)."""
    import keras

    ref = getattr(keras.applications, entry)(weights=None, include_preprocessing=False)
    ours = getattr(kcz, entry)()
    _copy(ref, ours)
    x = np.random.default_rng(3).standard_normal((1, 224, 224, 3)).astype("float32")
    expected = ref(x, training=False).numpy()
    np.testing.assert_allclose(ours(x, training=False).numpy(), expected, atol=1e-4, rtol=0)
    assert expected.std() > 1e-5
