import numpy as np
import pytest

from keras_convzoo.backend import keras
from keras_convzoo.blocks import basic_block, bottleneck_block, conv_bn_act, inverted_residual_block


def _model(fn, shape, **kwargs):
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn(inputs, **kwargs))


def _params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_resnext_bottleneck_params_and_layout():
    # torchvision resnext50_32x4d layer1[0]: 64->128 (1x1), 128->128 g32 (3x3), 128->256, downsample 64->256
    model = _model(bottleneck_block, (56, 56, 64), planes=64, cardinality=32, base_width=4, name="b")
    expected = 64 * 128 + 2 * 128 + 9 * 4 * 128 + 2 * 128 + 128 * 256 + 2 * 256 + 64 * 256 + 2 * 256
    assert _params(model) == expected
    assert model.output_shape == (None, 56, 56, 256)
    names = [layer.name for layer in model.layers]
    for part in ("b_conv1", "b_bn1", "b_conv2", "b_conv3", "b_bn3", "b_downsample_conv", "b_add", "b_out"):
        assert part in names
    assert type(model.get_layer("b_conv2")).__name__ == "GroupConv2D"


def test_se_bottleneck_and_identity_shortcut():
    model = _model(bottleneck_block, (8, 8, 256), planes=64, se_ratio=1 / 16, name="b")
    # no downsample when shapes match; SE 256 -> 16 -> 256 with biases
    assert "b_downsample_conv" not in [layer.name for layer in model.layers]
    se = 256 * 16 + 16 + 16 * 256 + 256
    expected = 256 * 64 + 128 + 9 * 64 * 64 + 128 + 64 * 256 + 512 + se
    assert _params(model) == expected


def test_strided_blocks_use_symmetric_padding():
    model = _model(basic_block, (9, 9, 8), planes=16, strides=2, name="b")
    assert model.output_shape == (None, 5, 5, 16)
    assert model.get_layer("b_conv1_pad").padding == ((1, 1), (1, 1))


def test_zero_init_last_makes_residual_branch_silent():
    model = _model(basic_block, (6, 6, 8), planes=8, name="b")
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize("strides,expansion,residual", [(1, 6, True), (2, 6, False), (1, 1, True)])
def test_inverted_residual(strides, expansion, residual):
    model = _model(inverted_residual_block, (16, 16, 24), filters=24, strides=strides,
                   expansion=expansion, name="ir")
    names = [layer.name for layer in model.layers]
    assert ("ir_add" in names) == residual
    assert ("ir_expand_conv" in names) == (expansion != 1)
    assert type(model.get_layer("ir_dw_conv")).__name__ == "DepthwiseConv2D"
    assert model.get_layer("ir_dw_relu").max_value == 6.0
    assert model.output_shape == (None, 16 // strides, 16 // strides, 24)


def test_conv_bn_act_errors():
    inputs = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="activation"):
        conv_bn_act(inputs, 4, 3, activation="gelu")
    with pytest.raises(ValueError, match="padding_mode"):
        conv_bn_act(inputs, 4, 3, padding_mode="reflect")
