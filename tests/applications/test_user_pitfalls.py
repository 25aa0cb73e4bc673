"""Pitfalls a new user hit: numpy numbers, input_tensor / input_shape, empty stages, channels-first shapes,
option spellings, and CCNN's continuous resolution with the paper's omega_0."""

import re
import warnings

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.applications.ccnn import continuous_omega_0
from keras_convzoo.backend import keras

RESNEXT_TINY = kcz.get_spec("resnext50_32x4d").test_overrides
MOBILENET_TINY = kcz.get_spec("mobilenetv2_100").test_overrides
CONVNEXT_TINY = kcz.get_spec("convnext_tiny").test_overrides
SHUFFLENET_TINY = kcz.get_spec("shufflenet_v2_x1_0").test_overrides
CCNN_TINY = dict(depth=1, width=8, kernel_hidden=8, kernel_size=9, mask_init=0.4)


def _resnext(**kwargs):
    return kcz.ResNeXt50(**dict(RESNEXT_TINY, **kwargs))


# 1. numpy scalars are numbers; bools are no ints


@pytest.mark.parametrize(
    "alpha,name",
    [(np.float32(1.0), "mobilenetv2_100"), (np.float32(0.35), "mobilenetv2_035"), (np.float64(0.5), "mobilenetv2_050"),
     (np.int64(1), "mobilenetv2_100"), (np.array(0.75, "float32"), "mobilenetv2_075")],
)
def test_mobilenet_alpha_accepts_numpy_numbers(alpha, name):
    model = kcz.MobileNetV2(input_shape=(32, 32, 3), alpha=alpha, classes=3, **MOBILENET_TINY)
    assert model.name == name
    assert tuple(model.output_shape) == (None, 3)


def test_numpy_numbers_everywhere_a_python_number_is_accepted():
    model = _resnext(
        input_shape=(np.int64(32), np.int32(40), np.int64(3)), classes=np.int64(7), drop_rate=np.float32(0.25),
        depths=np.array([1, 1, 1, 1]), widths=tuple(np.int64(w) for w in (8, 16, 32, 64)),
        cardinality=np.int64(4), base_width=np.int32(32),
    )
    assert tuple(model.input_shape) == (None, 32, 40, 3)
    assert tuple(model.output_shape) == (None, 7)
    assert model.get_layer("head_dropout").rate == pytest.approx(0.25)
    assert len({layer.name.split("_")[1] for layer in model.layers if layer.name.startswith("stage1_block")}) == 1
    convnext = kcz.ConvNeXtTiny(input_shape=(32, 32, 3), classes=np.int32(2), **dict(CONVNEXT_TINY,
                                depths=np.array([1, 1, 1, 1]), kernel_size=np.int64(3)))
    assert tuple(convnext.output_shape) == (None, 2)
    shufflenet = kcz.ShuffleNetV2(1.0, input_shape=(32, 32, 3), classes=3,
                                  **dict(SHUFFLENET_TINY, stage_repeats=np.array([1, 1, 1])))
    assert tuple(shufflenet.output_shape) == (None, 3)
    ccnn = kcz.CCNN(input_shape=(None, None, 3), classes=np.int64(4), depth=np.int64(2), width=np.int64(8),
                    kernel_hidden=np.int64(8), kernel_size=np.int64(9), mask_init=np.float32(0.4))
    assert ccnn.name == "ccnn_2_8"
    assert tuple(ccnn.output_shape) == (None, 4)


def test_bools_are_still_no_ints():
    with pytest.raises(TypeError, match=r"`alpha` must be a number, one of \[0.35, .*\]. Received: alpha=True"):
        kcz.MobileNetV2(alpha=True)
    with pytest.raises(TypeError, match=r"`alpha` must be a number.*Received: alpha=np.True_"):
        kcz.MobileNetV2(alpha=np.bool_(True))
    with pytest.raises(ValueError, match=r"`classes` must be a positive int. Received: classes=True"):
        _resnext(classes=True)
    with pytest.raises(ValueError, match=r"`classes` must be a positive int. Received: classes=True"):
        _resnext(classes=np.bool_(True))
    with pytest.raises(TypeError, match=r"`cardinality` must be an int for ResNeXt50. Received: cardinality=True"):
        _resnext(cardinality=True)
    with pytest.raises(TypeError, match=r"`depths` must be a tuple of ints for ResNeXt50. "
                                        r"Received: depths=\(True, 1, 1, 1\)"):
        _resnext(depths=(True, 1, 1, 1))
    with pytest.raises(TypeError, match=r"`width` must be an int for CCNN. Received: width=12.5"):
        kcz.CCNN(width=12.5)
    with pytest.raises(ValueError, match=r"`alpha` must be one of \[0.35, 0.5, 0.75, 1.0, 1.3, 1.4\] for "
                                         r"MobileNetV2. Received: alpha=np.float32\(0.6\)"):
        kcz.MobileNetV2(alpha=np.float32(0.6))


# 2. and 3. input_tensor: its rank, and an input_shape that contradicts it


def test_input_tensor_of_the_wrong_rank_names_input_tensor():
    with pytest.raises(ValueError) as info:
        _resnext(input_tensor=keras.Input((64, 64)))
    message = str(info.value)
    assert message == (
        "`input_tensor` must have rank 4 (batch, height, width, channels) for ResNeXt50. "
        "Received: input_tensor with shape (None, 64, 64) (rank 3)"
    )
    with pytest.raises(ValueError, match=re.escape(
        "`input_tensor` must have rank 3 (batch, length, channels) or 4 (batch, height, width, channels) or "
        "5 (batch, depth, height, width, channels) for CCNN. Received: input_tensor with shape "
        "(None, 4, 4, 4, 4, 3) (rank 6)"
    )):
        kcz.CCNN(input_tensor=keras.Input((4, 4, 4, 4, 3)), **CCNN_TINY)
    with pytest.raises(TypeError, match="`input_tensor` must be a symbolic Keras tensor.*ndarray"):
        _resnext(input_tensor=np.zeros((1, 64, 64, 3), "float32"))


@pytest.mark.parametrize("input_shape", [(64, 64, 3), (48, 64, 3), (48, 48, 1), (None, None, 4)])
def test_input_tensor_and_contradicting_input_shape_raise(input_shape):
    tensor = keras.Input((48, 48, 3))
    with pytest.raises(ValueError) as info:
        _resnext(input_tensor=tensor, input_shape=input_shape)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("`input_shape` contradicts `input_tensor` for ResNeXt50: the tensor's shape without "
                              "the batch axis is (48, 48, 3)")
    assert message.endswith(f"Received: input_shape={input_shape}, input_tensor with shape (None, 48, 48, 3)")


def test_input_tensor_and_agreeing_input_shape_build():
    tensor = keras.Input((48, 48, 3))
    for input_shape in [(48, 48, 3), (None, None, 3), [48, None, 3]]:
        model = _resnext(input_tensor=tensor, input_shape=input_shape, classes=4)
        assert model.inputs[0] is tensor
        assert tuple(model.input_shape) == (None, 48, 48, 3)
    # a tensor of any size with a static input_shape: the tensor stays the input; the sizes are checked
    open_tensor = keras.Input((None, None, 3))
    model = _resnext(input_tensor=open_tensor, input_shape=(64, 64, 3), classes=4)
    assert model.inputs[0] is open_tensor
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 4)
    with pytest.raises(ValueError, match=r"Input size must be at least 32 for ResNeXt50. "
                                         r"Received: input_tensor with shape \(None, None, None, 3\)"):
        _resnext(input_tensor=open_tensor, input_shape=(16, 16, 3))


# 4. stages of zero blocks


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: kcz.ResNeXt50(depths=(0, 0, 0, 0)),
         "`depths` must be a non-empty tuple with every entry >= 1 for ResNeXt50. Received: depths=(0, 0, 0, 0)"),
        (lambda: kcz.SEResNet18(depths=(2, 2, 0, 2)),
         "`depths` must be a non-empty tuple with every entry >= 1 for SEResNet18. Received: depths=(2, 2, 0, 2)"),
        (lambda: kcz.ResNeXt50(depths=()),
         "`depths` must be a non-empty tuple with every entry >= 1 for ResNeXt50. Received: depths=()"),
        (lambda: kcz.ConvNeXtTiny(depths=(3, 3, 0, 3)),
         "`depths` must be a non-empty tuple with every entry >= 1 for ConvNeXtTiny. Received: depths=(3, 3, 0, 3)"),
        (lambda: kcz.ConvNeXtTiny(dims=(96, 0, 384, 768)),
         "`dims` must be a non-empty tuple with every entry >= 1 for ConvNeXtTiny. Received: dims=(96, 0, 384, 768)"),
        (lambda: kcz.MobileNetV2(block_settings=((1, 16, 1, 1), (6, 24, 0, 2))),
         "`block_settings` must be a non-empty tuple with every entry >= 1 for MobileNetV2. "
         "Received: block_settings=((1, 16, 1, 1), (6, 24, 0, 2))"),
        (lambda: kcz.CCNN(depth=0),
         "`depth` must be >= 1 for CCNN. Received: depth=0"),
        (lambda: kcz.create_model("resnext101_32x8d", cardinality=0),
         "`cardinality` must be >= 1 for ResNeXt101. Received: cardinality=0"),
    ],
)
def test_empty_stages_are_refused(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


def test_shufflenet_empty_stage_is_refused_numpy_repeats_too():
    with pytest.raises(ValueError, match=r"`stage_repeats` .*>= 1 for ShuffleNetV2. Received: stage_repeats=\(4, 0, 4\)"):
        kcz.ShuffleNetV2(1.0, stage_repeats=np.array([4, 0, 4]))


def test_replknet_empty_stage_and_shufflenet_numpy_width():
    with pytest.raises(ValueError, match=r"`depths` .*>= 1 for RepLKNet31B. Received: depths=\(0, 0, 0, 0\)"):
        kcz.RepLKNet31B(depths=(0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"`padding_mode` .*Did you mean 'torch'"):
        kcz.RepLKNet31B(padding_mode="torhc")
    model = kcz.ShuffleNetV2(np.float32(0.5), padding_mode="Torch", **kcz.get_spec("shufflenet_v2_x0_5").test_overrides,
                             input_shape=(32, 32, 3), classes=3)
    assert model.name.startswith("shufflenet") and model.output_shape == (None, 3)


# 5. channels-first shapes


@pytest.mark.parametrize(
    "build,use,received",
    [
        (lambda: kcz.ResNeXt50(input_shape=(3, 224, 224)), "(224, 224, 3)", "input_shape=(3, 224, 224)"),
        (lambda: kcz.ConvNeXtTiny(input_shape=(3, None, None), include_top=False), "(None, None, 3)",
         "input_shape=(3, None, None)"),
        (lambda: kcz.MobileNetV2(input_shape=(1, 96, 128)), "(96, 128, 1)", "input_shape=(1, 96, 128)"),
        # CCNN takes any size: (3, 32, 32) would build a 32-channel model of 3x32 images
        (lambda: kcz.CCNN(input_shape=(3, 32, 32), **CCNN_TINY), "(32, 32, 3)", "input_shape=(3, 32, 32)"),
        (lambda: kcz.CCNN(input_shape=(1, 784), **CCNN_TINY), "(784, 1)", "input_shape=(1, 784)"),
    ],
)
def test_channels_first_shape_gets_the_channels_last_spelling(build, use, received):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == (
        f"`input_shape` looks channels-first; keras_convzoo models are channels_last: use {use}. Received: {received}"
    )


def test_channels_first_input_tensor_gets_the_permute_hint():
    with pytest.raises(ValueError) as info:
        _resnext(input_tensor=keras.Input((3, 64, 64)))
    assert str(info.value) == (
        "`input_tensor` looks channels-first; keras_convzoo models are channels_last: use a tensor of shape "
        "(None, 64, 64, 3) (keras.layers.Permute((2, 3, 1)) moves the channels last). "
        "Received: input_tensor with shape (None, 3, 64, 64)"
    )


def test_channels_last_shapes_are_not_mistaken_for_channels_first():
    assert tuple(_resnext(input_shape=(64, 64, 3), classes=2).input_shape) == (None, 64, 64, 3)
    assert tuple(_resnext(input_shape=(32, 32, 1), include_top=False).input_shape) == (None, 32, 32, 1)
    assert tuple(kcz.CCNN(input_shape=(3, 3, 2), classes=2, **CCNN_TINY).input_shape) == (None, 3, 3, 2)
    assert tuple(kcz.CCNN(input_shape=(3, 4), classes=2, **CCNN_TINY).input_shape) == (None, 3, 4)


# 7. option strings


def test_option_strings_are_case_insensitive():
    model = _resnext(include_top=False, pooling="AVG", input_shape=(32, 32, 3))
    assert tuple(model.output_shape) == (None, 256)
    assert model.layers[-1].name == "avg_pool"
    model = _resnext(include_top=False, pooling=" Max", input_shape=(32, 32, 3))
    assert model.layers[-1].name == "max_pool"
    model = _resnext(input_shape=(32, 32, 3), classes=3, classifier_activation="Softmax")
    assert model.get_layer("predictions").activation is keras.activations.softmax
    model = kcz.create_model("seresnet18", block="BASIC", downsample="Conv", input_shape=(32, 32, 3),
                             **kcz.get_spec("seresnet18").test_overrides)
    assert model.get_layer("stem_pool_conv") is not None
    assert kcz.MobileNetV2(input_shape=(32, 32, 3), padding_mode="Torch", **MOBILENET_TINY).get_layer(
        "stem_conv").padding == "valid"  # torch mode pads explicitly
    ccnn = kcz.CCNN(input_shape=(16, 16, 3), resolution="Continuous", kernel_network="MAGNet",
                    conv_method="Direct", dropout_type="PLAIN", dropout=0.1, omega_0=0.5, **CCNN_TINY)
    conv = ccnn.get_layer("stem_conv")
    assert (conv.resolution, conv.kernel_network_type, conv.conv_method) == ("continuous", "magnet", "direct")


def test_weights_tags_are_case_insensitive():
    # recognised as the pretrained tag (no download: the classes check comes first)
    with pytest.raises(ValueError, match=r"With weights='imagenet' \(.*\) and include_top=True, `classes` must be 1000"):
        _resnext(weights="ImageNet", classes=10)
    with pytest.raises(ValueError, match=r"With weights='fb_in1k' \(convnext_tiny.fb_in1k\) and include_top=True, `classes` must be 1000"):
        kcz.ConvNeXtTiny(weights="FB_IN1K", classes=10)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(include_top=False, pooling="mean"), ValueError,
         "`pooling` must be one of (None, 'avg', 'max') for ResNeXt50. Did you mean 'avg'? Received: pooling='mean'"),
        (dict(include_top=False, pooling="none"), ValueError,
         "`pooling` must be one of (None, 'avg', 'max') for ResNeXt50. Did you mean None? Received: pooling='none'"),
        (dict(include_top=False, pooling="mx"), ValueError,
         "`pooling` must be one of (None, 'avg', 'max') for ResNeXt50. Did you mean 'max'? Received: pooling='mx'"),
        (dict(classifier_activation="sofmax"), ValueError,
         "`classifier_activation` must name a Keras activation (e.g. 'softmax', 'sigmoid', 'linear') or be None. "
         "Did you mean 'softmax'? Received: classifier_activation='sofmax'"),
        (dict(block="bottlenek"), ValueError,
         "`block` must be one of ('basic', 'bottleneck') for ResNeXt50. Did you mean 'bottleneck'? "
         "Received: block='bottlenek'"),
        (dict(downsample="stride"), ValueError,
         "`downsample` must be one of ('pool', 'conv') for ResNeXt50. Received: downsample='stride'"),
    ],
)
def test_misspelled_options_get_the_right_spelling(kwargs, error, message):
    with pytest.raises(error) as info:
        _resnext(**kwargs)
    assert str(info.value) == message


def test_misspelled_ccnn_options():
    with pytest.raises(ValueError, match=re.escape(
        "`resolution` must be one of ('fixed', 'continuous') for CCNN. Did you mean 'continuous'? "
        "Received: resolution='continous'"
    )):
        kcz.CCNN(resolution="continous")
    with pytest.raises(ValueError, match=re.escape("Did you mean 'magnet'? Received: kernel_network='magnett'")):
        kcz.CCNN(kernel_network="magnett")


# 6. CCNN: resolution="continuous" needs kernels smooth on the training grid


def _midpoint_error(model, size):
    """RMS (relative to the kernel's) of the stem kernel's new taps at 2x the training size against the mean of
    their neighbours: ~0 for a kernel that resamples, ~1 for one aliased on the grid."""
    from keras_convzoo.backend import tf

    layer = model.get_layer("stem_conv")
    coarse = np.array(layer.kernel(tf.zeros((1, size, size, 3))))
    fine = np.array(layer.kernel(tf.zeros((1, 2 * size, 2 * size, 3)))) * 4  # the continuous rule's 1/4 undone
    assert fine.shape[0] == 2 * coarse.shape[0] - 1  # the grid refined over the same extent, no crop
    np.testing.assert_allclose(fine[::2, ::2], coarse, rtol=1e-5, atol=1e-7)
    middle = fine[1::2, ::2]
    return np.sqrt(np.mean((middle - 0.5 * (coarse[:-1] + coarse[1:])) ** 2)) / np.sqrt(np.mean(coarse ** 2))


def test_continuous_resolution_defaults_to_an_omega_that_resamples():
    continuous_errors, aliased_errors = [], []
    for seed in range(3):
        arch = dict(depth=1, width=8, kernel_hidden=16, kernel_size=9, mask_init=1.0, seed=seed)  # mask 1.0: no crop
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            continuous = kcz.CCNN(input_shape=(8, 8, 3), classes=10, resolution="continuous", **arch)
        assert continuous.get_layer("stem_conv").omega_0 == 0.5 == continuous_omega_0(9, 2)
        with pytest.warns(UserWarning, match=re.escape(
            "CCNN: resolution='continuous' with omega_0=4231.57 on a 9-point kernel grid: the kernels alias on the "
            "grid and transfer poorly to other resolutions (see CCNNConfig.omega_0); use omega_0<=0.5 (omega_0=None "
            "picks 0.5 with resolution='continuous')."
        )):
            aliased = kcz.CCNN(input_shape=(8, 8, 3), classes=10, resolution="continuous", omega_0=4231.57, **arch)
        continuous_errors.append(_midpoint_error(continuous, 8))
        aliased_errors.append(_midpoint_error(aliased, 8))
    # measured: 0.13 (0.05-0.21) with the default, 1.3 (1.06-1.53) with the paper's omega_0
    assert np.mean(continuous_errors) < 0.3
    assert np.mean(aliased_errors) > 0.9


def test_fixed_resolution_keeps_the_papers_omega():
    for dims, omega in ((1, 2976.49), (2, 4231.57)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = kcz.CCNN(input_shape=(None,) * dims + (3,), classes=10, **CCNN_TINY)
        assert model.get_layer("stem_conv").omega_0 == omega
    large = kcz.create_model("ccnn_6_380", input_shape=(None, None, 3), classes=10, **dict(CCNN_TINY, width=8))
    assert large.get_layer("stem_conv").omega_0 == 976.78


def test_continuous_omega_0_scales_with_the_grid_and_dims():
    assert continuous_omega_0(33, 2) == 2.0
    assert continuous_omega_0((33, 9), 2) == 0.5
    assert continuous_omega_0(65, 1) == pytest.approx(64 * np.sqrt(0.5) / 16)
    model = kcz.CCNN(input_shape=(None, None, 3), classes=10, resolution="continuous", train_size=32,
                     depth=1, width=8, kernel_hidden=8)  # the default 33-point grid
    assert model.get_layer("block1_conv").omega_0 == 2.0
    sequence = kcz.CCNN(input_shape=(65, 1), classes=10, resolution="continuous", depth=1, width=8, kernel_hidden=8)
    assert sequence.get_layer("stem_conv").omega_0 == pytest.approx(2.8284271)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit omega_0 within the bound: no warning
        kcz.CCNN(input_shape=(None, None, 3), resolution="continuous", train_size=32, omega_0=0.5, **CCNN_TINY)
