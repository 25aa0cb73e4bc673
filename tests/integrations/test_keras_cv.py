"""keras-cv adapter: zoo trunks as keras_cv.models.Backbone in ImageClassifier and RetinaNet."""

import subprocess
import sys

import numpy as np
import pytest

import keras_cv  # noqa: F401  (a test dependency: .ci installs .[all]; imported before tf_keras)

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.integrations import keras_cv as kcz_cv
from keras_convzoo.testing import randomize_batch_norms

FAMILY_MODELS = sorted({kcz.get_spec(n).family: n for n in reversed(kcz.list_models())}.values())


def _tiny(name):
    return dict(kcz.get_spec(name).test_overrides)


@pytest.mark.parametrize("name", [n for n in FAMILY_MODELS if kcz.get_spec(n).family != "ccnn"])
def test_pyramid_levels_of_every_pyramid_family(name, zoo_pyramid, assert_same_features):
    backbone = kcz_cv.backbone(name, **_tiny(name))
    assert isinstance(backbone, keras_cv.models.Backbone)
    levels = backbone.pyramid_level_inputs
    assert list(levels) == ["P2", "P3", "P4", "P5"]
    randomize_batch_norms(backbone, seed=1)  # no identity BN, no silent residual branch
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")
    extractor = keras.Model(backbone.inputs, {k: backbone.get_layer(v).output for k, v in levels.items()})
    out = extractor(x)
    # the levels are the zoo model's own stage outputs (same weights, same inputs)
    assert_same_features(out, zoo_pyramid(name, backbone, x, **_tiny(name)))
    for level, value in out.items():
        stride = 2 ** int(level[1])
        assert tuple(value.shape[1:3]) == (64 // stride, 64 // stride), (level, value.shape)
        assert value.shape[-1] == backbone.pyramid_level_channels[level]
    # the deepest stage of each stride, e.g. ResNet's stage1 (not the stem) for P2
    info = {i.layer: i for i in kcz.applications.create_feature_extractor(name, **_tiny(name)).feature_info}
    for level, layer in levels.items():
        deeper = [i for i in info.values() if i.stride == info[layer].stride]
        assert deeper[-1].layer == layer


def test_ccnn_has_no_pyramid_but_classifies():
    name = "ccnn_4_140"
    backbone = kcz_cv.backbone(name, input_shape=(32, 32, 3), **_tiny(name))
    assert backbone.pyramid_level_inputs == {}
    randomize_batch_norms(backbone, seed=1)
    classifier = keras_cv.models.ImageClassifier(backbone=backbone, num_classes=3, activation=None)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    logits = np.asarray(classifier(x))
    assert logits.shape == (2, 3)
    # = the zoo model (include_top=False, pooling="avg", the backbone's weights) and the classifier's Dense
    reference = kcz.create_model(name, input_shape=(32, 32, 3), include_top=False, pooling="avg", **_tiny(name))
    for layer in reference.layers:
        if layer.weights:
            layer.set_weights(backbone.get_layer(layer.name).get_weights())
    kernel, bias = classifier.get_layer("predictions").get_weights()
    expected = np.asarray(reference(x, training=False)) @ kernel + bias
    assert float(np.abs(expected[0] - expected[1]).max()) > 1e-3  # the two inputs give different logits
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))


def test_image_classifier_trains_saves_and_loads(tmp_path, fit_trains_backbone):
    name = "resnext50_32x4d"
    backbone = kcz_cv.backbone(name, **_tiny(name))
    reference = kcz.create_model(name, include_top=False, **_tiny(name))
    assert [layer.name for layer in backbone.layers] == [layer.name for layer in reference.layers]

    classifier = keras_cv.models.ImageClassifier(backbone=backbone, num_classes=4)
    classifier.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", jit_compile=False)
    x = fit_trains_backbone(classifier, backbone, "stage1_block1_conv1")

    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.backbone).__name__ == "KerasCVBackbone"
    assert loaded.backbone.model_name == name
    assert sorted(loaded.backbone.get_config()["model_kwargs"]) == sorted(_tiny(name))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-6)


def test_backbone_config_round_trip():
    name = "mobilenetv2_100"
    backbone = kcz_cv.backbone(name, input_shape=(64, 64, 3), **_tiny(name))
    config = backbone.get_config()
    assert config["model_name"] == name and config["input_shape"] == (64, 64, 3)
    clone = type(backbone).from_config(config)
    assert clone.pyramid_level_inputs == backbone.pyramid_level_inputs
    assert clone.count_params() == backbone.count_params()
    assert clone.input_shape == (None, 64, 64, 3)


def test_retinanet_forward_and_training_step():
    name = "seresnet18"
    backbone = kcz_cv.backbone(name, **_tiny(name))
    detector = keras_cv.models.RetinaNet(backbone=backbone, num_classes=3, bounding_box_format="xywh")
    images = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype("float32")
    out = detector({"images": images})
    anchors = 9 * sum((64 // 2**level) ** 2 if 64 // 2**level else 1 for level in range(3, 8))
    assert tuple(out["box"].shape) == (2, anchors, 4)
    assert tuple(out["classification"].shape) == (2, anchors, 3)
    # the P3-P5 features RetinaNet reads are the zoo stages of stride 8/16/32
    assert detector.feature_extractor.output["P3"].shape[1:] == backbone.get_layer(
        backbone.pyramid_level_inputs["P3"]
    ).output.shape[1:]

    detector.compile(
        optimizer=keras.optimizers.SGD(0.01), classification_loss="focal", box_loss="smoothl1", jit_compile=False
    )
    boxes = {
        "boxes": np.array([[[4, 4, 20, 24], [30, 10, 20, 20]], [[10, 12, 30, 30], [0, 0, -1, -1]]], "float32"),
        "classes": np.array([[0, 2], [1, -1]], "float32"),
    }
    # (one step: the residual branches start at zero, BN gamma zero-init, so look at the stem)
    kernel = backbone.get_layer("stem_conv").kernel
    before = kernel.numpy().copy()
    history = detector.fit(images, boxes, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, kernel.numpy()), "the detector loss did not reach the zoo backbone"


def test_argument_errors():
    with pytest.raises(TypeError, match="include_top"):
        kcz_cv.backbone("seresnet18", include_top=True)
    with pytest.raises(TypeError, match="pooling"):
        kcz_cv.backbone("seresnet18", pooling="avg")
    with pytest.raises(ValueError, match="Unknown model name"):
        kcz_cv.backbone("resnet9000")
    with pytest.raises(TypeError, match="registry name"):
        kcz_cv.backbone(None)


def test_optional_import_and_missing_keras_cv_message():
    """In a fresh process: importing keras_convzoo (and the adapter module) does not import
    keras-cv; without keras-cv, backbone() raises an ImportError naming the pip command."""
    code = (
        "import sys, keras_convzoo, keras_convzoo.integrations.keras_cv as adapter\n"
        "print('IMPORTED', 'keras_cv' in sys.modules)\n"
        "sys.modules['keras_cv'] = None\n"
        "try:\n    adapter.backbone('seresnet18')\n"
        "except ImportError as error:\n    print('MESSAGE', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "IMPORTED False" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "MESSAGE" in result.stdout and "pip install keras-cv==0.9.0" in result.stdout, result.stderr[-2000:]
