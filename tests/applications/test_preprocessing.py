"""preprocess_input matches keras.applications mode by mode; decode_predictions uses the shipped names."""

import json

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.applications.imagenet_utils import CLASS_INDEX_PATH, imagenet_class_index
from keras_convzoo.backend import LEGACY_KERAS, keras, tf

keras3_only = pytest.mark.skipif(LEGACY_KERAS, reason="compares with Keras 3's keras.applications")


def _images(dtype="float32", shape=(2, 8, 9, 3)):
    return np.random.default_rng(0).uniform(0, 255, shape).astype(dtype)


def test_each_variant_scales_as_its_default_weights_expect():
    x = _images()
    for entry in kcz.list_pretrained():
        if entry.default:  # the registry name stands for its weights="imagenet" entry
            np.testing.assert_array_equal(kcz.preprocess_input(x, entry.name), kcz.preprocess_input(x, entry.key))
    assert {e.preprocessing for e in kcz.list_pretrained() if e.source == "timm"} == {"torch"}
    assert kcz.get_spec("ccnn_4_140").preprocessing is None  # no ImageNet scaling of its own


@keras3_only
@pytest.mark.parametrize(
    "name,mode,reference",
    [
        ("mobilenetv2_100", "tf", "mobilenet_v2"),  # keras.applications' MobileNetV2 scaling
        ("mobilenetv2_100", None, "mobilenet_v2"),  # weights="imagenet" is keras.applications' file
        ("resnext50_32x4d", None, "torch"),
        ("seresnet50", None, "torch"),
        ("mobilenetv2_100.ra_in1k", None, "torch"),  # timm's tag: ImageNet mean/std
        ("convnext_tiny.fb_in1k", None, "torch"),
        ("convnext_tiny", "torch", "torch"),
        ("resnext50_32x4d", "caffe", "resnet50"),
    ],
)
def test_equals_keras_applications(name, mode, reference):
    import keras as keras3

    apps = keras3.applications
    if reference == "mobilenet_v2":
        ref_fn = apps.mobilenet_v2.preprocess_input
    elif reference == "resnet50":
        ref_fn = apps.resnet50.preprocess_input
    else:
        def ref_fn(x):
            return apps.imagenet_utils.preprocess_input(x, mode="torch")
    for dtype in ("float32", "uint8"):
        x = _images(dtype)
        original = x.copy()
        got = kcz.preprocess_input(x, name, mode=mode)
        np.testing.assert_array_equal(x, original)  # never in place (keras scales float arrays in place)
        expected = ref_fn(x.copy())
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        tensor = kcz.preprocess_input(tf.constant(x), name, mode=mode)
        assert tensor.dtype == tf.float32
        np.testing.assert_allclose(tensor.numpy(), got, atol=1e-6, rtol=0)
        if dtype == "float32":  # keras' tensor path does not cast integer tensors (ours does)
            np.testing.assert_allclose(tensor.numpy(), ref_fn(tf.constant(x)).numpy(), atol=1e-6, rtol=0)


@keras3_only
def test_convnext_differs_from_keras_on_purpose():
    """keras' ConvNeXt normalises inside the model (its preprocess_input is the identity, as ours for its
    weights="imagenet" file); built without weights ours does not, and timm's tags want preprocess_input's
    normalisation, which equals include_preprocessing=True on raw pixels."""
    import keras as keras3

    x = _images(shape=(1, 32, 32, 3))
    np.testing.assert_array_equal(keras3.applications.convnext.preprocess_input(x), x)
    np.testing.assert_array_equal(kcz.preprocess_input(x, "convnext_tiny"), x)
    assert not np.allclose(kcz.preprocess_input(x, "convnext_tiny.fb_in1k"), x)
    tiny = kcz.get_spec("convnext_tiny").test_overrides
    plain = kcz.ConvNeXtTiny(input_shape=(32, 32, 3), **tiny)
    with_layer = kcz.ConvNeXtTiny(input_shape=(32, 32, 3), include_preprocessing=True, **tiny)
    assert len(with_layer.weights) == len(plain.weights)  # Keras 3's Normalization holds constants only
    with_layer.set_weights(plain.get_weights())
    np.testing.assert_allclose(with_layer(x).numpy(), plain(kcz.preprocess_input(x, "convnext_tiny.fb_in1k")).numpy(),
                               atol=1e-5, rtol=0)


def test_symbolic_input_inside_a_model():
    inputs = keras.Input((8, 8, 3))
    outputs = kcz.preprocess_input(inputs, "seresnet50")
    model = keras.Model(inputs, outputs)
    x = _images(shape=(2, 8, 8, 3))
    np.testing.assert_allclose(model(x).numpy(), kcz.preprocess_input(x, "seresnet50"), atol=1e-6, rtol=0)


def test_preprocess_errors():
    x = _images()
    with pytest.raises(ValueError, match="Unknown model name"):
        kcz.preprocess_input(x, "resnet9000")
    with pytest.raises(ValueError, match="`mode` must be"):
        kcz.preprocess_input(x, "seresnet50", mode="imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights.*mode="):
        kcz.preprocess_input(x, "ccnn_4_140")
    np.testing.assert_allclose(kcz.preprocess_input(x, "ccnn_4_140", mode="tf"), x / 127.5 - 1, atol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        kcz.preprocess_input(_images(shape=(1, 4, 4, 1)), "convnext_tiny.fb_in1k")
    with pytest.raises(ValueError, match=r"Unknown pretrained tag 'fb_in1' for 'convnext_tiny'.*'fb_in1k'"):
        kcz.preprocess_input(x, "convnext_tiny.fb_in1")


def test_decode_predictions_on_one_hot():
    preds = np.zeros((3, 1000), "float32")
    preds[0, 0] = 1.0  # documented ImageNet-1k facts: class 0 tench, 1 goldfish, 2 great white shark
    preds[1, [1, 2]] = [0.25, 0.75]
    preds[2, 517] = 1.0
    decoded = kcz.decode_predictions(preds, top=2)
    assert decoded[0][0] == ("n01440764", "tench", 1.0)
    assert [d[:2] for d in decoded[1]] == [("n01484850", "great_white_shark"), ("n01443537", "goldfish")]
    assert [d[2] for d in decoded[1]] == [0.75, 0.25]
    assert decoded[2][0] == ("n03126707", "crane", 1.0)  # the machine; 134 is the bird, also "crane"
    assert len(kcz.decode_predictions(tf.constant(preds))[0]) == 5


def test_class_index_is_shipped_and_follows_keras_convention():
    classes = imagenet_class_index()
    assert len(classes) == 1000 and len({wnid for wnid, _ in classes}) == 1000
    assert [wnid for wnid, _ in classes] == sorted(wnid for wnid, _ in classes)
    assert classes[134] == ("n02012849", "crane") and classes[517][1] == "crane"
    assert classes[638][1] == classes[639][1] == "maillot"
    assert classes[155] == ("n02086240", "Shih-Tzu") and classes[999] == ("n15075141", "toilet_tissue")
    assert all(" " not in name for _, name in classes)
    with open(CLASS_INDEX_PATH, encoding="utf-8") as f:
        assert json.load(f)["1"] == ["n01443537", "goldfish"]  # keras' imagenet_class_index.json layout


def test_decode_predictions_errors():
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        kcz.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        kcz.decode_predictions(np.zeros(1000))
    with pytest.raises(ValueError, match="`top`"):
        kcz.decode_predictions(np.zeros((1, 1000)), top=0)


def test_a_built_model_is_scaled_as_it_was_built_not_as_its_default_weights(tmp_path):
    """ConvNeXt's default weights (keras.applications') normalise inside the model; built without them it does not.

    The transfer recipe (``preprocessing_layers(backbone)`` in front of a
    ``weights=None`` ConvNeXt) must then normalise 0-255 pixels itself: the
    recipe's model equals the same backbone built with
    ``include_preprocessing=True`` on raw pixels, and the exporters read its
    input as pixels (they read zero-mean input before, and an int8 file
    calibrated on that range failed on real images). A reloaded ``.keras``
    model (no ``pretrained_cfg``) is scaled the same way, and a model that
    scales its own input passes pixels unchanged.
    """
    tiny = kcz.get_spec("convnext_tiny").test_overrides
    backbone = kcz.ConvNeXtTiny(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3), **tiny)
    x = _images(shape=(2, 32, 32, 3))
    normalised = (x / 255.0 - np.array(kcz.applications.imagenet_utils.IMAGENET_MEAN)) / np.array(
        kcz.applications.imagenet_utils.IMAGENET_STD)
    np.testing.assert_allclose(kcz.preprocess_input(x, backbone), normalised, atol=1e-5, rtol=0)
    layers = kcz.preprocessing_layers(backbone)
    assert [type(layer).__name__ for layer in layers] == ["Rescaling", "Normalization"]

    inputs = keras.Input((32, 32, 3))
    y = inputs
    for layer in layers:
        y = layer(y)
    recipe = keras.Model(inputs, backbone(y))
    assert kcz.export.input_range(recipe).kind == "pixels"
    inside = kcz.ConvNeXtTiny(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3),
                              include_preprocessing=True, **tiny)
    inside.set_weights(backbone.get_weights())
    np.testing.assert_allclose(recipe(x).numpy(), inside(x).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(kcz.preprocess_input(x, inside), x)  # it normalises its pixels itself
    assert kcz.preprocessing_layers(inside) == []

    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    reloaded = keras.models.load_model(path)
    assert getattr(reloaded, "pretrained_cfg", None) is None
    np.testing.assert_allclose(kcz.preprocess_input(x, reloaded), normalised, atol=1e-5, rtol=0)
    fused = kcz.deploy.fuse(backbone)
    np.testing.assert_allclose(kcz.preprocess_input(x, fused), normalised, atol=1e-5, rtol=0)
    # models built with weights keep their entry's scaling; names keep their default weights'
    np.testing.assert_array_equal(kcz.preprocess_input(x, "convnext_tiny"), x)
    mobilenet = kcz.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    np.testing.assert_allclose(kcz.preprocess_input(x, mobilenet), x / 127.5 - 1, atol=1e-5, rtol=0)
