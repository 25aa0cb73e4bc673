"""What the keras-cv and keras-hub adapter tests share."""

import numpy as np
import pytest

import keras_convzoo as kcz


@pytest.fixture
def fit_trains_backbone():
    """``check(classifier, backbone, layer_name)``: one epoch of ``fit`` on random data changes that backbone layer."""

    def check(classifier, backbone, layer_name):
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(8, 64, 64, 3)).astype("float32")
        y = rng.integers(0, 4, size=(8,))
        kernel = backbone.get_layer(layer_name).kernel
        before = kernel.numpy().copy()
        history = classifier.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert not np.allclose(before, kernel.numpy()), "fit did not train the zoo backbone"
        return x

    return check


def _zoo_pyramid(name, backbone, x, **kwargs):
    """P2..P5 computed by the zoo model itself on ``x``, with ``backbone``'s weights.

    The zoo's own feature extractor (``create_feature_extractor``, built from the registry name) gets the
    backbone's weights layer by layer; ``Pn`` is its deepest stage of stride ``2**n``.
    """
    extractor = kcz.applications.create_feature_extractor(name, **kwargs)
    copied = 0
    for layer in extractor.layers:
        if layer.weights:
            layer.set_weights(backbone.get_layer(layer.name).get_weights())
            copied += 1
    assert copied > 0
    features = extractor(x, training=False)
    levels = {}
    for stage, stride in extractor.feature_strides.items():  # network order: the deepest stage of a stride wins
        if 4 <= stride <= 32:
            levels[f"P{stride.bit_length() - 1}"] = np.asarray(features[stage])
    return levels


def _assert_same_features(got, expected):
    assert sorted(got) == sorted(expected)
    for level, value in got.items():
        value, reference = np.asarray(value), expected[level]
        assert value.shape == reference.shape, level
        scale = float(np.abs(reference).max())
        assert scale > 0 and float(reference.std()) > 1e-3 * scale, level  # a varying feature map, not zeros
        np.testing.assert_allclose(value, reference, rtol=0, atol=1e-5 * scale, err_msg=level)


@pytest.fixture
def zoo_pyramid():
    """``zoo_pyramid(name, backbone, x, **kwargs)``: P2..P5 of the zoo's own feature extractor with the backbone's weights."""
    return _zoo_pyramid


@pytest.fixture
def assert_same_features():
    """``assert_same_features(got, expected)``: the same levels, shapes and values (1e-5 of the scale), not flat."""
    return _assert_same_features
