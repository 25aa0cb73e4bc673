"""ShuffleNetV2: variant selection, torchvision layout, block semantics, downsample option.

Registry-wide checks (exact parameter counts of the full-size variants, the
tiny twins through run_application_test, fusion, forward/train step) run
from test_all_models.py, test_forward.py and tests/deploy automatically.
Numerical parity with torchvision is checked by
tools/check_shufflenet_torchvision.py (needs torch, so not a test).
"""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.applications.shufflenet_v2 import ShuffleNetV2Config
from keras_convzoo.backend import keras
from keras_convzoo.blocks import shufflenet_v2_block

NAMES = {0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0", 1.5: "shufflenet_v2_x1_5",
         2.0: "shufflenet_v2_x2_0"}
TORCHVISION_CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                        1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}
TORCHVISION_PARAMS = {0.5: 1_366_792, 1.0: 2_278_604, 1.5: 3_503_624, 2.0: 7_393_996}
TINY = kcz.get_spec("shufflenet_v2_x1_0").test_overrides


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_registered_variants_follow_torchvision():
    assert kcz.list_models("shufflenet_v2*") == sorted(NAMES.values())
    for width, name in NAMES.items():
        spec = kcz.get_spec(name)
        assert spec.entrypoint == "ShuffleNetV2"
        assert spec.reference_params == TORCHVISION_PARAMS[width]
        assert spec.config.stage_out_channels == TORCHVISION_CHANNELS[width]
        assert spec.config.stage_repeats == (4, 8, 4)
        assert spec.config.bn_epsilon == 1e-5 and spec.config.padding_mode == "torch"


def test_width_multiplier_selects_the_variant():
    for width, name in NAMES.items():
        model = kcz.ShuffleNetV2(width, input_shape=(32, 32, 3), classes=3, **TINY)
        assert model.name == name and tuple(model.output_shape) == (None, 3)
    model = kcz.ShuffleNetV2(width_multiplier=0.5, include_top=False, pooling="avg", **TINY)
    assert model.name == "shufflenet_v2_x0_5" and tuple(model.output_shape) == (None, 64)
    assert "Args:" in kcz.ShuffleNetV2.__doc__ and "Example:" in kcz.ShuffleNetV2.__doc__
    with pytest.raises(ValueError, match="width_multiplier"):
        kcz.ShuffleNetV2(0.75)
    with pytest.raises(TypeError, match="width_multiplier"):
        kcz.ShuffleNetV2("1.0")
    with pytest.raises(TypeError, match="unknown argument"):
        kcz.ShuffleNetV2(1.0, alpha=1.0)


def test_layer_names_and_feature_strides():
    model = kcz.ShuffleNetV2(1.0, input_shape=(64, 64, 3), **TINY)
    names = [layer.name for layer in model.layers]
    for expected in ["stem_conv", "stem_bn", "stem_relu", "stem_pool",
                     "stage2_block1_branch1_dw_conv", "stage2_block1_branch1_pw_relu",
                     "stage2_block1_branch2_pw1_conv", "stage2_block1_branch2_dw_bn",
                     "stage2_block2_split", "stage2_block2_concat", "stage4_block1_shuffle",
                     "head_conv", "head_bn", "head_relu", "avg_pool", "predictions"]:
        assert expected in names, expected
    assert isinstance(model.get_layer("stage2_block1_branch2_dw_conv"), keras.layers.DepthwiseConv2D)
    assert model.get_layer("stem_bn").epsilon == 1e-5
    assert not any(layer.get_config().get("use_bias") for layer in model.layers
                   if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)))
    spec = kcz.get_spec("shufflenet_v2_x1_0").with_config(**TINY)
    _, features = spec.body(keras.Input((64, 64, 3)), spec.config)
    sizes = [features[k].shape[1] for k in ("stem", "stage2", "stage3", "stage4", "head")]
    assert sizes == [16, 8, 4, 2, 2]
    assert [features[k].shape[-1] for k in ("stem", "stage2", "stage3", "stage4", "head")] == [8, 16, 32, 48, 64]


def test_stride1_block_keeps_first_half_and_interleaves():
    # torchvision: cat(x1, branch2(x2)) then channel_shuffle(2): even output channels are x1.
    inputs = keras.Input((None, None, 12))
    model = keras.Model(inputs, shufflenet_v2_block(inputs, 12, name="b"))
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 12)).astype("float32")
    y = model(x, training=False).numpy()
    np.testing.assert_array_equal(y[..., 0::2], x[..., :6])
    assert np.all(y[..., 1::2] >= 0) and np.abs(y[..., 1::2]).max() > 0  # branch ends with ReLU
    strided = keras.Model(inputs, shufflenet_v2_block(inputs, 20, strides=2, name="s"))
    assert tuple(strided(x).shape) == (2, 3, 3, 20)
    with pytest.raises(ValueError, match="filters"):
        shufflenet_v2_block(inputs, 16, strides=1)
    with pytest.raises(ValueError, match="filters"):
        shufflenet_v2_block(inputs, 15, strides=2)
    with pytest.raises(ValueError, match="strides"):
        shufflenet_v2_block(inputs, 12, strides=3)


def test_downsample_conv_replaces_the_stem_pool():
    pool = kcz.ShuffleNetV2(1.0, input_shape=(None, None, 3), classes=4, **TINY)
    conv = kcz.ShuffleNetV2(1.0, input_shape=(None, None, 3), classes=4, downsample="conv", **TINY)
    c = TINY["stage_out_channels"][0]
    assert _trainable(conv) - _trainable(pool) == 9 * c * c + 2 * c
    assert conv.count_params() - pool.count_params() == 9 * c * c + 4 * c
    names = [layer.name for layer in conv.layers]
    assert {"stem_pool_conv", "stem_pool_bn", "stem_pool_relu"} <= set(names)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in conv.layers)
    x = np.random.default_rng(1).standard_normal((1, 33, 33, 3)).astype("float32")
    assert conv(x).shape == pool(x).shape == (1, 4)
    spec = kcz.get_spec("shufflenet_v2_x1_0")
    features = {}
    for mode in ("pool", "conv"):
        variant = spec.with_config(downsample=mode, **TINY)
        _, maps = variant.body(keras.Input((33, 47, 3)), variant.config)
        features[mode] = {k: tuple(v.shape) for k, v in maps.items()}
    assert features["pool"] == features["conv"]
    assert features["conv"]["stem"] == (None, 9, 12, 8)


def test_invalid_config_values():
    with pytest.raises(ValueError, match="downsample"):
        kcz.ShuffleNetV2(1.0, downsample="avg", **TINY)
    with pytest.raises(ValueError, match="stage_out_channels"):
        kcz.ShuffleNetV2(1.0, stage_out_channels=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="even"):
        kcz.ShuffleNetV2(1.0, stage_out_channels=(8, 16, 33, 48, 64), stage_repeats=(1, 1, 1))
    with pytest.raises(ValueError, match="padding_mode"):
        kcz.ShuffleNetV2(1.0, padding_mode="reflect", **TINY)
    assert ShuffleNetV2Config().downsample == "pool"
