"""Every registered variant, through its tiny twin, against keras.applications semantics."""

import dataclasses

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.testing import run_application_test

ALL_MODELS = kcz.list_models()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_application_semantics(name):
    run_application_test(name)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_shapes_and_names(name):
    spec = kcz.get_spec(name)
    overrides = spec.test_overrides
    top = kcz.create_model(name, **overrides)
    assert top.name == name
    assert tuple(top.input_shape) == (None, spec.default_size, spec.default_size, 3)
    assert tuple(top.output_shape) == (None, 1000)
    trunk = kcz.create_model(name, include_top=False, **overrides)
    assert tuple(trunk.input_shape) == (None, None, None, 3)
    assert spec.default_input_shape == tuple(top.input_shape)[1:] and spec.input_shape_at(None) == (None, None, 3)
    names = [layer.name for layer in top.layers]
    assert len(names) == len(set(names))
    assert names[1].startswith("stem_")  # deterministic, hierarchical names
    assert not any(n.startswith(("conv2d", "batch_normalization", "dense")) for n in names)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_full_size_trainable_params_equal_reference(name):
    """Full-size models: trainable counts equal timm/torchvision/keras.applications."""
    spec = kcz.get_spec(name)
    model = kcz.create_model(name, **spec.reference_kwargs)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    assert trainable == spec.reference_params, (name, trainable, spec.reference_params)


def test_published_counts_from_the_issue():
    expected = {
        "resnext50_32x4d": 25_028_904,
        "resnext101_32x8d": 88_791_336,
        "seresnet50": 28_088_024,
        "seresnext50_32x4d": 27_559_896,
    }
    for name, count in expected.items():
        assert kcz.get_spec(name).reference_params == count
    assert kcz.MobileNetV2().count_params() == 3_538_984


def test_entrypoints_build_their_variant():
    cases = {
        kcz.ResNeXt50: "resnext50_32x4d",
        kcz.ResNeXt101: "resnext101_32x8d",
        kcz.SEResNet18: "seresnet18",
        kcz.SEResNet34: "seresnet34",
        kcz.SEResNet50: "seresnet50",
        kcz.SEResNet101: "seresnet101",
        kcz.SEResNet152: "seresnet152",
        kcz.SEResNeXt50: "seresnext50_32x4d",
        kcz.SEResNeXt101: "seresnext101_32x4d",
    }
    for fn, name in cases.items():
        assert fn.__name__ == kcz.get_spec(name).entrypoint
        assert "Args:" in fn.__doc__ and "Example:" in fn.__doc__
        model = fn(input_shape=(32, 32, 3), classes=3, **kcz.get_spec(name).test_overrides)
        assert model.name == name and tuple(model.output_shape) == (None, 3)
    for alpha, name in [(0.35, "mobilenetv2_035"), (1.3, "mobilenetv2_130")]:
        model = kcz.MobileNetV2((32, 32, 3), alpha, classes=3)
        assert model.name == name


def test_stage_features_have_expected_strides():
    spec = kcz.get_spec("seresnext50_32x4d").with_config(**kcz.get_spec("seresnext50_32x4d").test_overrides)
    from keras_convzoo.backend import keras

    inputs = keras.Input((64, 64, 3))
    _, features = spec.body(inputs, spec.config)
    assert [features[k].shape[1] for k in ("stem", "stage1", "stage2", "stage3", "stage4")] == [16, 16, 8, 4, 2]


def test_spec_input_shape_follows_spatial_dims_and_channels():
    spec = dataclasses.replace(kcz.get_spec("ccnn_4_140"), spatial_dims=3, input_channels=1, default_size=20)
    assert spec.input_shape_at(16) == (16, 16, 16, 1) and spec.default_input_shape == (20, 20, 20, 1)
