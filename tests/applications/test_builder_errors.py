"""Bad input gets a clear error naming the argument; weights load all-or-nothing."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import LEGACY_KERAS, keras

NAME = "seresnext50_32x4d"
TINY = kcz.get_spec(NAME).test_overrides


def _tiny(**kwargs):
    return kcz.create_model(NAME, **dict(TINY, **kwargs))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"pooling": "mean", "include_top": False}, ValueError, "pooling"),
        ({"input_shape": (64, 64)}, ValueError, "input_shape"),
        ({"input_shape": (64, 64, 3, 1)}, ValueError, "input_shape"),
        ({"input_shape": (16, 64, 3)}, ValueError, "at least 32"),
        ({"input_shape": (64, 64, 0)}, ValueError, "channel"),
        ({"input_shape": "64x64"}, TypeError, "input_shape"),
        ({"classes": 0}, ValueError, "classes"),
        ({"classes": 2.5}, ValueError, "classes"),
        ({"classifier_activation": "nope"}, ValueError, "classifier_activation"),
        ({"include_top": "yes"}, TypeError, "include_top"),
        ({"weights": "imagenet", "classes": 10}, ValueError, "`classes` must be 1000"),
        ({"weights": "/nonexistent/model.weights.h5"}, ValueError, "does not exist"),
        ({"weights": "model.pt"}, ValueError, "does not exist"),  # a timm checkpoint path
        ({"weights": 3}, TypeError, "weights"),
        ({"depth_multiplier": 2}, TypeError, "unknown argument"),
        ({"block": "wide"}, ValueError, "block"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _tiny(**kwargs)


def test_weights_without_porter_take_only_our_files():
    with pytest.raises(ValueError, match="weights.h5"):  # no state-dict porter: only our own files
        kcz.create_model("replknet31_base", weights="model.pt")


def test_entrypoint_rejects_unknown_kwargs():
    with pytest.raises(TypeError, match="unknown argument"):
        kcz.ResNeXt50(input_shape=(32, 32, 3), foo=1)
    with pytest.raises(TypeError, match="unknown argument"):
        kcz.MobileNetV2(input_shape=(32, 32, 3), foo=1)


def test_mobilenet_alpha():
    with pytest.raises(ValueError, match="alpha"):
        kcz.MobileNetV2(alpha=0.6)
    with pytest.raises(TypeError, match="alpha"):
        kcz.MobileNetV2(alpha="1.0")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model name"):
        kcz.create_model("resnet9000")


def test_registry_refuses_duplicates():
    from keras_convzoo.applications import register

    with pytest.raises(ValueError, match="already registered"):
        register(kcz.get_spec(NAME))


def test_any_channel_count_without_weights():
    model = _tiny(input_shape=(None, None, 5), include_top=False, pooling="avg")
    assert model(np.zeros((1, 40, 48, 5), "float32")).shape[0] == 1


def _snapshot(model):
    return [np.array(w) for w in model.weights]


def test_weights_round_trip_and_mismatches(tmp_path):
    source = _tiny(input_shape=(None, None, 3), classes=10)
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)

    loaded = _tiny(input_shape=(None, None, 3), classes=10, weights=path)
    x = np.random.default_rng(0).standard_normal((1, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), source(x).numpy(), atol=1e-6)

    with pytest.raises(ValueError, match="classes=7"):
        _tiny(input_shape=(None, None, 3), classes=7, weights=path)
    with pytest.raises(ValueError, match="channels"):
        _tiny(input_shape=(None, None, 1), classes=10, weights=path)
    with pytest.raises(ValueError):
        _tiny(input_shape=(None, None, 3), include_top=False, weights=path)


@pytest.mark.skipif(LEGACY_KERAS, reason="Keras 3 weights format")
def test_nothing_half_loaded(tmp_path):
    source = _tiny(input_shape=(None, None, 3), classes=10)
    path = str(tmp_path / "tiny.weights.h5")
    source.save_weights(path)
    target = _tiny(input_shape=(None, None, 3), classes=7)
    before = _snapshot(target)
    with pytest.raises(kcz.weights.WeightsMismatchError, match="predictions"):
        kcz.weights.load(target, path)
    for old, new in zip(before, _snapshot(target)):
        np.testing.assert_array_equal(old, new)


def test_input_tensor_from_another_graph():
    inputs = keras.Input((48, 48, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(inputs)
    model = _tiny(input_tensor=scaled, classes=4)
    assert model.inputs[0] is inputs or model.inputs[0].name == inputs.name
    assert model(np.zeros((2, 48, 48, 3), "float32")).shape == (2, 4)


def test_include_top_allows_dynamic_size_and_default():
    model = _tiny(input_shape=(None, None, 3), classes=3)
    assert model(np.zeros((1, 64, 80, 3), "float32")).shape == (1, 3)
    assert tuple(_tiny().input_shape) == (None, 224, 224, 3)
