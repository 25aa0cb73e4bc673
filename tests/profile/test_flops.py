"""count_flops: hand-computed MACs of small models, and the published totals of the full-size variants."""

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_convzoo as kcz
from keras_convzoo import layers
from keras_convzoo.backend import keras
from keras_convzoo.ops.grids import crop_sizes
from keras_convzoo.profile import count_flops, fft_macs, format_macs

ROOT = Path(__file__).resolve().parents[2]


def _model(input_shape, *layer_list):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layer_list:
        x = layer(x)
    return keras.Model(inputs, x)


# ------------------------------------------------------------ arithmetic
def test_conv2d_and_dense_on_a_4d_input():
    model = _model(
        (10, 12, 3),
        keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv"),  # -> 5x6x8
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.Conv2D(4, (3, 5), padding="valid", name="valid"),  # -> 3x2x4
        keras.layers.Dense(5, name="dense"),  # at each of the 3x2 positions
    )
    macs = count_flops(model)
    conv, valid, dense = 3 * 3 * 3 * 8 * (5 * 6), 3 * 5 * 8 * 4 * (3 * 2), 4 * 5 * (3 * 2)
    assert macs.by_layer == {"conv": conv, "bn": 0, "relu": 0, "valid": valid, "dense": dense}
    assert macs.by_type == {"Conv2D": conv + valid, "Dense": dense, "BatchNormalization": 0, "ReLU": 0}
    assert macs.total == conv + valid + dense == 6480 + 2880 + 120
    assert macs.input_shape == (10, 12, 3) and macs.uncounted == ()


def test_grouped_depthwise_and_1d_3d_convolutions():
    model = _model(
        (8, 8, 16),
        keras.layers.Conv2D(32, 3, padding="same", groups=4, name="grouped"),
        layers.GroupConv2D(32, 3, padding="same", groups=8, name="group_conv"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),  # valid -> 6x6x64
        keras.layers.SeparableConv2D(10, 3, name="sep"),  # valid -> 4x4x10
    )
    macs = count_flops(model).by_layer
    assert macs["grouped"] == 3 * 3 * (16 // 4) * 32 * 64 == 73728
    assert macs["group_conv"] == 3 * 3 * (32 // 8) * 32 * 64 == 73728
    assert macs["dw"] == 3 * 3 * 32 * 2 * 36
    assert macs["sep"] == (3 * 3 * 64 + 64 * 10) * 16
    seq = _model((20, 4), keras.layers.Conv1D(6, 5, padding="causal", name="c1"),
                 keras.layers.DepthwiseConv1D(3, name="d1"))  # -> 18 steps
    assert count_flops(seq).by_layer == {"c1": 5 * 4 * 6 * 20, "d1": 3 * 6 * 18}
    vol = _model((4, 5, 6, 2), keras.layers.Conv3D(3, 3, padding="same", name="c3"))
    assert count_flops(vol).total == 27 * 2 * 3 * 4 * 5 * 6


def test_package_layers():
    model = _model(
        (9, 9, 8),
        layers.ReparamLargeKernelConv(7, small_kernel=3, name="replk"),
        layers.ShiftConv2D(9, name="shift"),
        layers.SqueezeExcite(ratio=0.25, divisor=None, name="se"),  # 9 -> 2 -> 9
        keras.layers.Conv2DTranspose(2, 3, strides=2, name="up"),
    )
    macs = count_flops(model).by_layer
    assert macs["replk"] == (7 * 7 + 3 * 3) * 8 * 81
    assert macs["shift"] == 8 * 9 * 81
    assert macs["se"] == 2 * 9 * 2
    assert macs["up"] == 3 * 3 * 9 * 2 * 81  # per input position
    fused = count_flops(kcz.deploy.fuse(model)).by_layer
    assert fused["replk"] == 7 * 7 * 8 * 81  # the merged kernel only


def test_spatial_transformer_counts_its_localization_network():
    localization = keras.Sequential(
        [keras.layers.Conv2D(4, 3, strides=2, name="loc_conv"), keras.layers.GlobalAveragePooling2D(name="gap"),
         keras.layers.Dense(8, name="loc_dense")], name="loc")
    model = _model((9, 9, 2), layers.SpatialTransformer(localization, name="stn"))
    macs = count_flops(model)
    conv, dense, affine = 9 * 2 * 4 * 16, 4 * 8, 8 * 6
    assert macs.by_layer == {"stn/loc/loc_conv": conv, "stn/loc/gap": 0, "stn/loc/loc_dense": dense,
                             "stn/affine": affine}
    assert macs.total == conv + dense + affine


def _magnet(taps, dims, hidden, layers_, out):
    return taps * ((layers_ + 1) * dims * hidden + layers_ * hidden * hidden + hidden * out)


def _separable_flex(method, **kwargs):
    layer = layers.SeparableFlexConv(6, kernel_size=9, dynamic_cropping=False, kernel_hidden=8, kernel_layers=2,
                                     conv_method=method, seed=1, name="sfc", **kwargs)
    return _model((16, 16, 4), layer), layer


def test_separable_flex_conv_direct_and_fft():
    generator = 81 * (3 * 2 * 8 + 2 * 8 * 8 + 8 * 4)  # MAGNet at 9x9 taps, 4 depthwise channels
    pointwise = 4 * 6 * 256
    direct = 81 * 4 * 256
    model, _ = _separable_flex("direct")
    assert count_flops(model).total == generator + direct + pointwise == 16848 + 82944 + 6144
    # FFT over the 24x24 grid (16 + 9 - 1 = 24, already 5-smooth): 3 real FFTs per channel
    # (signal, kernel, inverse) plus a complex product (4 real MACs) per bin of the 24x13 half spectrum.
    fft = 3 * 4 * round(576 * math.log2(576)) + 4 * 4 * (24 * 13)
    model, _ = _separable_flex("fft")
    assert count_flops(model).total == generator + fft + pointwise
    assert fft_macs(576) == round(576 * math.log2(576)) and fft_macs(1) == 0
    # "auto": FFT only when every kernel dim has more than fft_threshold taps.
    model, _ = _separable_flex("auto", fft_threshold=8)
    assert count_flops(model).total == generator + fft + pointwise
    model, _ = _separable_flex("auto", fft_threshold=9)
    assert count_flops(model).total == generator + direct + pointwise


def test_separable_flex_conv_deploy_form_has_no_generator():
    model, _ = _separable_flex("direct")
    fused = kcz.deploy.fuse(model)
    assert fused.get_layer("sfc").deploy
    assert count_flops(fused).total == 81 * 4 * 256 + 4 * 6 * 256


def test_flex_conv_counts_the_cropped_kernel():
    layer = layers.FlexConv(3, kernel_size=31, mask_init=0.2, kernel_hidden=4, kernel_layers=1, conv_method="direct",
                            seed=0, name="flex")
    model = _model((20, 20, 2), layer)
    taps = crop_sizes([0.2, 0.2], (31, 31), causal=False)
    assert taps[0] < 31
    k = taps[0] * taps[1]
    assert count_flops(model).total == _magnet(k, 2, 4, 1, 2 * 3) + k * 2 * 3 * 400


def test_ck_conv_dense_fft_causal_1d():
    layer = layers.CKConv(3, kernel_size="same", causal=True, kernel_hidden=4, kernel_layers=1, conv_method="fft",
                          seed=0, name="ck")
    model = _model((20, 2), layer)
    length = 40  # the 5-smooth FFT length >= 20 + 20 - 1 that the op uses (2^3 * 5)
    fft = (2 + 2 * 3 + 3) * round(length * math.log2(length)) + 4 * 2 * 3 * (length // 2 + 1)
    assert count_flops(model).total == _magnet(20, 1, 4, 1, 2 * 3) + fft


def test_siren_kernel_network():
    layer = layers.CKConv(2, kernel_size=7, kernel_network="siren", kernel_hidden=6, kernel_layers=3,
                          conv_method="direct", seed=0, name="ck")
    model = _model((12, 3), layer)
    generator = 7 * (1 * 6 + 2 * 6 * 6 + 6 * 3 * 2)  # dims->h, 2 x h->h, h->C_in*C_out per tap
    assert count_flops(model).total == generator + 7 * 3 * 2 * 12


# ------------------------------------------------------------ input shapes
def test_input_shape_fills_none_dims_and_is_checked():
    model = _model((None, None, 3), keras.layers.Conv2D(2, 1, name="pw"))
    assert count_flops(model, (4, 5, 3)).total == count_flops(model, (4, 5)).total == 3 * 2 * 20
    assert count_flops(model, (8, 10)).total == 4 * count_flops(model, (4, 5)).total
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model)
    static = _model((6, 6, 3), keras.layers.Conv2D(2, 1))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(static, (8, 8, 3))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(static, 6)
    with pytest.raises(TypeError, match="model"):
        count_flops(keras.layers.Conv2D(2, 1))


def test_nested_functional_model():
    inner = _model((None, None, 4), keras.layers.Conv2D(8, 3, padding="same", name="c"))
    inputs = keras.Input((None, None, 4))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    macs = count_flops(keras.Model(inputs, outputs), (5, 5, 4))
    assert macs.by_layer == {f"{inner.name}/c": 9 * 4 * 8 * 25, "head": 8 * 2 * 25}


def test_str_lists_types():
    model = _model((4, 4, 2), keras.layers.Conv2D(3, 1), keras.layers.ReLU())
    text = str(count_flops(model))
    assert "MACs at 4x4x2: 96" in text and "Conv2D" in text and "zero by convention: ReLU" in text
    assert format_macs(4.23e9) == "4.23G" and format_macs(300774272) == "300.77M"


# ------------------------------------------------------------ full-size variants
# timm's published GMACs (infer_gmacs of its results tables; RepLKNet: the paper's
# FLOPs, which are MACs), and the exact conv + linear MACs of timm's models
# measured with PyTorch's torch.utils.flop_counter.FlopCounterMode (FLOPs / 2).
PUBLISHED = {
    "resnext50_32x4d": (4.26e9, 4_230_479_872),
    "seresnet50": (4.11e9, 4_091_699_200),
    "mobilenetv2_100": (0.30e9, 300_774_272),
    "convnext_tiny": (4.47e9, 4_455_531_264),
    "replknet31_base": (15.3e9, None),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_macs_at_224(name):
    published, timm_exact = PUBLISHED[name]
    macs = count_flops(kcz.create_model(name))
    assert macs.input_shape == (224, 224, 3) and macs.uncounted == ()
    assert abs(macs.total - published) <= 0.02 * published, (name, macs.total)
    if timm_exact is not None:
        assert macs.total == timm_exact


def _alike_model(kcz, keras):
    """The model of ``test_tf_keras_models_are_counted_alike``; its source also runs in the tf_keras process."""
    i = keras.Input((None, None, 8))
    x = kcz.layers.GroupConv2D(8, 3, padding="same", groups=2, name="group_conv")(i)
    x = kcz.layers.SeparableFlexConv(4, kernel_size=9, dynamic_cropping=False, kernel_hidden=8, kernel_layers=1,
                                     seed=0, name="flex")(x)
    x = keras.layers.Dense(3, name="dense")(x)
    return keras.Model(i, x)


def test_tf_keras_models_are_counted_alike():
    script = (
        "import json\n"
        "import keras_convzoo as kcz\n"
        "from keras_convzoo.backend import KERAS_NAME, keras\n"
        "from keras_convzoo.profile import count_flops\n"
        + inspect.getsource(_alike_model)
        + "macs = count_flops(_alike_model(kcz, keras), (12, 12))\n"
        "print(KERAS_NAME, macs.total, json.dumps(macs.by_layer, sort_keys=True))\n"
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    name, total, by_layer = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert name == "tf_keras"
    # The independent count, by hand at 12x12 (144 positions): the grouped 3x3 conv (8 -> 8 in 2 groups), the
    # flex conv's kernel network (MAGNet, 2D coordinates -> 8 hidden -> 8 depthwise kernels, at 9x9 taps), its
    # direct 9x9 depthwise conv and 1x1 pointwise conv (8 -> 4), and the Dense (4 -> 3) at each position.
    group_conv = 9 * (8 // 2) * 8 * 144
    flex = _magnet(81, 2, 8, 1, 8) + 81 * 8 * 144 + 8 * 4 * 144
    dense = 4 * 3 * 144
    expected = {"group_conv": group_conv, "flex": flex, "dense": dense}
    assert json.loads(by_layer) == expected and int(total) == sum(expected.values())
    # and Keras 3 (this process) counts the same model alike, layer by layer
    macs = count_flops(_alike_model(kcz, keras), (12, 12))
    assert macs.by_layer == expected and macs.total == int(total)
