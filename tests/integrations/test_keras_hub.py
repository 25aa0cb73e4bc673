"""keras-hub adapter: zoo trunks as keras_hub.models.Backbone (FeaturePyramidBackbone)."""

import subprocess
import sys

import numpy as np
import pytest

import keras_cv  # noqa: F401  (both libraries load in one process: keras-cv first, as in test_keras_cv)
import keras_hub

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.integrations import keras_hub as kcz_hub
from keras_convzoo.testing import randomize_batch_norms


def _tiny(name):
    return dict(kcz.get_spec(name).test_overrides)


@pytest.mark.parametrize("name", ["convnext_tiny", "mobilenetv2_100", "seresnext50_32x4d"])
def test_pyramid_outputs(name, zoo_pyramid, assert_same_features):
    backbone = kcz_hub.backbone(name, **_tiny(name))
    assert isinstance(backbone, keras_hub.models.Backbone)
    assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
    assert list(backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    randomize_batch_norms(backbone, seed=1)  # no identity BN, no silent residual branch
    model = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")
    out = model(x)
    # the levels are the zoo model's own stage outputs (same weights, same inputs)
    assert_same_features(out, zoo_pyramid(name, backbone, x, **_tiny(name)))
    for level, value in out.items():
        stride = 2 ** int(level[1])
        assert tuple(value.shape[1:3]) == (64 // stride, 64 // stride), level
    assert backbone.pyramid_layers["P5"] in [layer.name for layer in backbone.layers]


def test_image_classifier_trains_saves_and_loads(tmp_path, fit_trains_backbone):
    name = "convnext_tiny"
    backbone = kcz_hub.backbone(name, **_tiny(name))
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=4)
    classifier.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    x = fit_trains_backbone(classifier, backbone, "stage1_block1_pw_conv1")

    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert type(loaded.backbone).__name__ == "KerasHubBackbone"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-6)


def test_retinanet_backbone_reads_the_pyramid(zoo_pyramid, assert_same_features):
    name = "seresnet18"
    encoder = kcz_hub.backbone(name, **_tiny(name))
    randomize_batch_norms(encoder, seed=1)
    fpn = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=7, use_p5=False)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")
    out = fpn(x)
    assert {k: tuple(v.shape[1:3]) for k, v in out.items()} == {
        "P3": (8, 8), "P4": (4, 4), "P5": (2, 2), "P6": (1, 1), "P7": (1, 1),
    }
    # = keras-hub's feature pyramid run on the zoo model's own P3-P5 (same weights, same inputs)
    zoo = zoo_pyramid(name, encoder, x, **_tiny(name))
    expected = fpn.feature_pyramid({level: zoo[level] for level in ("P3", "P4", "P5")})
    assert_same_features(out, {k: np.asarray(v) for k, v in expected.items()})


def test_config_round_trip_and_dtype():
    name = "shufflenet_v2_x0_5"
    backbone = kcz_hub.backbone(name, input_shape=(64, 64, 3), **_tiny(name))
    config = backbone.get_config()
    assert config["model_name"] == name and config["image_shape"] == (64, 64, 3)
    clone = type(backbone).from_config(config)
    assert clone.pyramid_layers == backbone.pyramid_layers
    assert clone.count_params() == backbone.count_params()
    half = kcz_hub.backbone(name, dtype="mixed_float16", **_tiny(name))
    assert half.dtype_policy.name == "mixed_float16"


def test_argument_errors():
    with pytest.raises(TypeError, match="input_tensor"):
        kcz_hub.backbone("seresnet18", input_tensor=keras.Input((32, 32, 3)))
    with pytest.raises(ValueError, match="Unknown model name"):
        kcz_hub.backbone("resnet9000")


def test_missing_keras_hub_names_the_pip_command():
    code = (
        "import sys, keras_convzoo\n"
        "print('IMPORTED', 'keras_hub' in sys.modules)\n"
        "sys.modules['keras_hub'] = None\n"
        "import keras_convzoo.integrations.keras_hub as adapter\n"
        "try:\n    adapter.backbone('seresnet18')\n"
        "except ImportError as error:\n    print('MESSAGE', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "IMPORTED False" in result.stdout, result.stdout + result.stderr[-2000:]  # not by import keras_convzoo
    assert "MESSAGE" in result.stdout and "pip install keras-hub==0.32.0" in result.stdout, result.stderr[-2000:]


def test_saved_model_loads_after_importing_the_adapter_alone(tmp_path):
    # keras-hub users load saved models after imports only; the adapter's import registers its class.
    backbone = kcz_hub.backbone("mobilenetv2_035", input_shape=(32, 32, 3), **_tiny("mobilenetv2_035"))
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", classifier.predict(x, verbose=0))
    classifier.save(tmp_path / "classifier.keras")
    code = (
        "import sys, numpy as np, keras\n"
        "import keras_convzoo.integrations.keras_hub\n"
        "model = keras.saving.load_model(sys.argv[1] + '/classifier.keras')\n"
        "got = model.predict(np.load(sys.argv[1] + '/x.npy'), verbose=0)\n"
        "print('CLASS', type(model.backbone).__name__, 'EQUAL', bool(np.array_equal(got, np.load(sys.argv[1] + '/y.npy'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert "CLASS KerasHubBackbone EQUAL True" in result.stdout, result.stdout + result.stderr[-3000:]
