"""deploy.fuse reaches into nested models: a zoo backbone inside a user's model, deeper nesting, Sequential."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.deploy import fuse
from keras_convzoo.layers.continuous_conv import ContinuousConvBase
from keras_convzoo.export.lowering import iter_layers as _all_layers  # every layer, nested models too
from keras_convzoo.testing import randomize_batch_norms


def _bn_names(model):
    return [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def _assert_close(got, expected, rtol=1e-5):
    scale = float(np.abs(expected).max())
    assert scale > 0
    assert np.abs(got - expected).max() <= rtol * scale, np.abs(got - expected).max() / scale


def _resnext_backbone():
    overrides = dict(kcz.get_spec("resnext50_32x4d").test_overrides, zero_init_last=False)
    return kcz.create_model("resnext50_32x4d", include_top=False, pooling="avg", input_shape=(32, 32, 3),
                            **overrides)


def test_nested_resnext_backbone_is_fused_two_levels_deep():
    backbone = _resnext_backbone()
    randomize_batch_norms(backbone)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = backbone(x)
    user = keras.Model(inputs, keras.layers.Dense(10, name="head")(x), name="user")
    outer_in = keras.Input((32, 32, 3), name="outer_image")
    outer = keras.Model(outer_in, keras.layers.Softmax(name="probs")(user(outer_in)), name="outer")

    fused = fuse(outer)
    fused_user = fused.get_layer("user")
    fused_backbone = fused_user.get_layer(backbone.name)
    assert [l.name for l in fused.layers] == [l.name for l in outer.layers]
    assert [l.name for l in fused_user.layers] == [l.name for l in user.layers]
    bns = _bn_names(backbone)
    assert len(bns) > 0 and _bn_names(fused_backbone) == []
    assert [l.name for l in fused_backbone.layers] == [l.name for l in backbone.layers if l.name not in bns]
    assert fused_user.get_layer("head") is not user.get_layer("head")
    head_kernel = user.get_layer("head").get_weights()[0]
    np.testing.assert_array_equal(fused_user.get_layer("head").get_weights()[0], head_kernel)

    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    _assert_close(fused(x).numpy(), outer(x, training=False).numpy())
    _assert_close(fused_user(x).numpy(), user(x, training=False).numpy())


def test_nested_sequential_and_a_nested_graph_with_the_same_layer_names():
    """The outer BN folding renames only the outer graph's edges, not the nested model's."""
    inner_in = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inner_in)
    b = keras.layers.BatchNormalization(name="bn")(a)  # feeds an Add with the conv: not folded
    inner = keras.Model(inner_in, keras.layers.Add(name="add")([a, b]), name="inner")
    sequential = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(6, 3, padding="same", name="s_conv"),
        keras.layers.BatchNormalization(name="s_bn"),  # folded into s_conv
        keras.layers.ReLU(name="s_relu"),
        keras.layers.BatchNormalization(name="s_pre_bn"),  # folded into s_pw's input side
        keras.layers.Conv2D(5, 1, use_bias=False, name="s_pw"),
        keras.layers.BatchNormalization(name="s_last_bn"),  # folded into s_pw too
    ], name="seq")
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)  # outer "bn" -> "conv": folded
    x = inner(x)
    model = keras.Model(inputs, sequential(x))
    randomize_batch_norms(model, seed=4)

    fused = fuse(model)
    assert _bn_names(fused) == []
    assert _bn_names(fused.get_layer("inner")) == ["bn"]
    fused_seq = fused.get_layer("seq")
    assert isinstance(fused_seq, keras.Sequential)
    assert [l.name for l in fused_seq.layers] == ["s_conv", "s_relu", "s_pw"]
    assert fused_seq.get_layer("s_pw").use_bias
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    _assert_close(fused(x).numpy(), model(x, training=False).numpy())
    # A Sequential at the top level is fused too.
    _assert_close(fuse(sequential)(x).numpy(), sequential(x, training=False).numpy())


def test_nested_ccnn_kernels_are_baked_and_unfusable_models_are_kept():
    backbone = kcz.create_model("ccnn_4_140", include_top=False, pooling="avg", input_shape=(None, None, 3),
                                **kcz.get_spec("ccnn_4_140").test_overrides)
    randomize_batch_norms(backbone, seed=2)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)))
    fused = fuse(model)
    continuous = [l for l in _all_layers(fused) if isinstance(l, ContinuousConvBase)]
    assert len(continuous) == 3 and all(l.deploy for l in continuous)
    x = np.random.default_rng(3).standard_normal((2, 20, 24, 3)).astype("float32")
    _assert_close(fused(x).numpy(), model(x, training=False).numpy())

    with pytest.raises(TypeError, match="functional or Sequential"):
        fuse(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="built Sequential"):
        fuse(keras.Sequential([keras.layers.Dense(3)]))
