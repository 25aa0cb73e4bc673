"""create_feature_extractor: multi-scale stage outputs of every family, with channels and strides."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.applications import FeatureInfo, build_application, create_feature_extractor
from keras_convzoo.backend import keras

FAMILY_MODELS = sorted({kcz.get_spec(n).family: n for n in reversed(kcz.list_models())}.values())


def _tiny_kwargs(name):
    return dict(kcz.get_spec(name).test_overrides)


def _body_features(name, shape):
    """Oracle: the stage tensors ``spec.body`` returns, built independently of features.py."""
    spec = kcz.get_spec(name).with_config(**_tiny_kwargs(name))
    inputs = keras.Input(shape)
    _, features = spec.body(inputs, spec.config)
    model = keras.Model(inputs, features)
    return {k: t._keras_history[0].name for k, t in features.items()}, model


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_family_matches_its_body(name):
    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(64)
    expected_layers, oracle = _body_features(name, shape)

    extractor = create_feature_extractor(name, input_shape=shape, **_tiny_kwargs(name))
    assert list(extractor.feature_layers) == list(expected_layers)  # every stage, network order
    assert extractor.feature_layers == expected_layers
    assert isinstance(extractor.output, dict) and list(extractor.output) == list(expected_layers)

    x = np.random.default_rng(0).uniform(-1, 1, size=(2,) + shape).astype("float32")
    oracle.set_weights(extractor.get_weights())
    got = extractor(x)
    want = oracle(x)
    for stage, info in zip(expected_layers, extractor.feature_info):
        assert isinstance(info, FeatureInfo) and info.name == stage
        value = np.asarray(got[stage])
        np.testing.assert_allclose(value, np.asarray(want[stage]), atol=1e-5, err_msg=stage)
        # metadata agrees with the computed maps
        assert value.shape[-1] == info.channels == extractor.feature_channels[stage]
        assert value.shape[1] == -(-shape[0] // info.stride), (stage, value.shape, info.stride)
        assert extractor.feature_strides[stage] == info.stride

    # the same layers are found from a model built by the zoo (here with its classifier)
    model = kcz.create_model(name, input_shape=shape, classes=7, **_tiny_kwargs(name))
    from_model = create_feature_extractor(model)
    assert from_model.feature_layers == expected_layers
    assert from_model.feature_strides == extractor.feature_strides
    # ... and it shares the model's weights
    out = from_model(x)
    stage = list(expected_layers)[-1]
    assert from_model.get_layer(expected_layers[stage]) is model.get_layer(expected_layers[stage])
    assert np.asarray(out[stage]).shape[-1] == from_model.feature_channels[stage]


def test_default_size_strides_and_channels():
    extractor = create_feature_extractor("resnext50_32x4d", stages=["stage2", "stage3", "stage4"], depths=(1, 1, 1, 1))
    assert extractor.feature_strides == {"stage2": 8, "stage3": 16, "stage4": 32}
    assert extractor.feature_channels == {"stage2": 512, "stage3": 1024, "stage4": 2048}
    features = extractor(np.zeros((1, 96, 128, 3), "float32"))
    assert list(features) == ["stage2", "stage3", "stage4"]
    assert tuple(features["stage2"].shape) == (1, 12, 16, 512)
    assert tuple(features["stage4"].shape) == (1, 3, 4, 2048)
    assert extractor.input_shape == (None, None, None, 3)


def test_mobilenet_stage_strides():
    extractor = create_feature_extractor("mobilenetv2_100", input_shape=(64, 64, 3), **_tiny_kwargs("mobilenetv2_100"))
    assert extractor.feature_strides == {
        "stem": 2, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16,
        "stage5": 16, "stage6": 32, "stage7": 32, "head": 32,
    }


def test_stage_selection_keeps_order_and_fixed_odd_size():
    name = "seresnet18"
    model = kcz.create_model(name, include_top=False, input_shape=(45, 37, 3), **_tiny_kwargs(name))
    extractor = create_feature_extractor(model, stages=("stage4", "stem"))
    assert list(extractor.output) == ["stage4", "stem"]
    assert extractor.feature_strides == {"stage4": 32, "stem": 4}
    out = extractor(np.zeros((1, 45, 37, 3), "float32"))
    assert tuple(out["stem"].shape[1:3]) == (12, 10)
    assert tuple(out["stage4"].shape[1:3]) == (2, 2)


def test_renamed_model_is_read_by_its_stages_or_needs_model_name(tmp_path):
    name = "shufflenet_v2_x0_5"
    # (create_model's first parameter is the registry name, so the model name goes through the builder)
    model = build_application(kcz.get_spec(name), include_top=False, name="my_net", **_tiny_kwargs(name))
    # the builder kept the body's stage outputs: no registry name needed
    assert create_feature_extractor(model, stages=["stage3"]).feature_strides == {"stage3": 16}
    # a model that lost them (reloaded from a file) is read by its layer names, which need the architecture
    path = tmp_path / "my_net.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert not hasattr(reloaded, "convzoo_stages")
    with pytest.raises(ValueError, match="model_name="):
        create_feature_extractor(reloaded)
    extractor = create_feature_extractor(reloaded, model_name=name, stages=["stage3"])
    assert extractor.feature_strides == {"stage3": 16}
    assert extractor.name == "my_net_features"
    # both ways find the same layers
    assert create_feature_extractor(model).output_names == create_feature_extractor(reloaded, model_name=name).output_names


def test_weights_are_loaded_through_the_builder(tmp_path):
    name = "convnext_tiny"
    model = kcz.create_model(name, include_top=False, **_tiny_kwargs(name))
    path = str(tmp_path / "trunk.weights.h5")
    model.save_weights(path)
    extractor = create_feature_extractor(name, weights=path, **_tiny_kwargs(name))
    x = np.random.default_rng(1).uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(extractor(x)["stage4"]), np.asarray(model(x)), atol=1e-5)


def test_bad_stage_names_list_the_allowed_ones():
    name = "seresnet18"
    with pytest.raises(ValueError, match=r"allowed: \['stem', 'stage1', 'stage2', 'stage3', 'stage4'\]") as error:
        create_feature_extractor(name, stages=["stage5"], **_tiny_kwargs(name))
    assert "stage5" in str(error.value)
    with pytest.raises(ValueError, match="allowed"):
        create_feature_extractor(name, stages=[], **_tiny_kwargs(name))
    with pytest.raises(ValueError, match="twice"):
        create_feature_extractor(name, stages=["stem", "stem"], **_tiny_kwargs(name))
    with pytest.raises(TypeError, match="stages"):
        create_feature_extractor(name, stages="stage2", **_tiny_kwargs(name))


def test_argument_errors():
    tiny = _tiny_kwargs("seresnet18")
    with pytest.raises(ValueError, match="include_top must be False"):
        create_feature_extractor("seresnet18", include_top=True, **tiny)
    with pytest.raises(ValueError, match="pooling"):
        create_feature_extractor("seresnet18", pooling="avg", **tiny)
    with pytest.raises(ValueError, match="Unknown model name"):
        create_feature_extractor("resnet9000")
    with pytest.raises(TypeError, match="model_or_name"):
        create_feature_extractor(3)
    with pytest.raises(TypeError, match="unknown argument"):
        create_feature_extractor("seresnet18", not_an_option=1, **tiny)
    model = kcz.create_model("seresnet18", include_top=False, **tiny)
    with pytest.raises(ValueError, match="input_shape"):
        create_feature_extractor(model, input_shape=(32, 32, 3))
    with pytest.raises(TypeError, match="model_name"):
        create_feature_extractor(model, depths=(1, 1, 1, 1))
    inputs = keras.Input((32, 32, 3))
    foreign = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs), name="seresnet18")
    with pytest.raises(ValueError, match="built by keras_convzoo"):
        create_feature_extractor(foreign)


def test_weights_file_with_top_loads_without_top(tmp_path):
    """A recorded weights file saved with the top, loaded with include_top=False: the builder runs the
    body a second time (the full model the file is loaded into); the stages must still be the trunk's."""
    name = "seresnet18"
    full = kcz.create_model(name, input_shape=(None, None, 3), classifier_activation=None, **_tiny_kwargs(name))
    path = kcz.weights.save(full, str(tmp_path / f"{name}.weights.h5"),
                            {"name": name, "source": None, "tag": None, "config": {}, "classes": 1000,
                             "include_top": True})
    extractor = create_feature_extractor(name, weights=path, **_tiny_kwargs(name))
    expected, _ = _body_features(name, (None, None, 3))
    assert extractor.feature_layers == expected
    trunk_of_full = keras.Model(full.input, full.get_layer(expected["stage4"]).output)
    x = np.random.default_rng(2).uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(extractor(x)["stage4"]), np.asarray(trunk_of_full(x)), atol=1e-5)


def test_exported_from_applications():
    import keras_convzoo.applications as apps

    assert apps.create_feature_extractor is create_feature_extractor
    assert "create_feature_extractor" in apps.__all__


def test_tf_keras():
    """The extractor and its strides also work when the package runs on tf_keras (fresh process)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, keras_convzoo as kcz\n"
        "from keras_convzoo.backend import KERAS_NAME\n"
        "from keras_convzoo.applications import create_feature_extractor\n"
        "tiny = kcz.get_spec('seresnet18').test_overrides\n"
        "e = create_feature_extractor('seresnet18', **tiny)\n"
        "out = e(np.zeros((1, 64, 64, 3), 'float32'))\n"
        "m = kcz.create_model('seresnet18', include_top=False, input_shape=(45, 37, 3), **tiny)\n"
        "f = create_feature_extractor(m, stages=['stage4', 'stem'])\n"
        "print('RESULT', KERAS_NAME, e.feature_strides['stage3'], tuple(out['stage3'].shape), f.feature_strides)\n"
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    assert line, result.stdout + result.stderr[-2000:]
    assert line[0] == "RESULT tf_keras 16 (1, 4, 4, 32) {'stage4': 32, 'stem': 4}"


def test_fused_model_keeps_its_stages_for_feature_extraction():
    from keras_convzoo.deploy import fuse
    from keras_convzoo.testing import randomize_batch_norms

    name = "resnext50_32x4d"
    model = randomize_batch_norms(kcz.create_model(name, include_top=False, **_tiny_kwargs(name)), seed=2)
    fused = fuse(model)
    assert set(fused.convzoo_stages) == set(model.convzoo_stages)
    assert {layer.name for layer in fused.layers} >= set(fused.convzoo_stages.values())
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    expected, got = create_feature_extractor(model)(x), create_feature_extractor(fused)(x)
    assert list(got) == list(expected) == list(model.convzoo_stages)
    for stage in expected:
        np.testing.assert_allclose(np.asarray(got[stage]), np.asarray(expected[stage]), rtol=1e-4, atol=1e-4)
