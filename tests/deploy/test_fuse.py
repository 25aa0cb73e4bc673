"""deploy.fuse gives the same outputs with fewer layers, for every registered family."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.deploy import fuse
from keras_convzoo.testing import randomize_batch_norms, run_model_saving_test


@pytest.mark.parametrize("name", kcz.list_models())
def test_fused_equals_unfused(name):
    spec = kcz.get_spec(name)
    overrides = dict(spec.test_overrides)
    if spec.family.startswith(("resnext", "seres")):
        overrides["zero_init_last"] = False  # let every branch matter
    model = kcz.create_model(name, input_shape=(None, None, 3), classes=6,
                             classifier_activation=None, **overrides)
    randomize_batch_norms(model)
    fused = fuse(model)
    x = np.random.default_rng(1).standard_normal((2, 64, 72, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    got = fused(x, training=False).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= 1e-4 * scale
    bn_count = sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    kept = [l.name for l in fused.layers if isinstance(l, keras.layers.BatchNormalization)]
    if spec.family == "ccnn":  # BNs beside continuous convs (whose kernels are baked) stay
        assert len(kept) == bn_count
    else:
        assert kept in ([], ["final_bn"])  # RepLKNet's BN before pooling has no conv beside it
    assert len(fused.layers) == len(model.layers) - bn_count + len(kept)
    assert not any(getattr(l, "deploy", True) is False for l in fused.layers)
    assert [l.name for l in fused.layers if l.name.startswith("predictions")] == ["predictions"]


def test_fused_model_saves_and_keeps_unfusable_bn():
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    bn = keras.layers.BatchNormalization(name="bn_shared")(a)
    out = keras.layers.Add(name="add")([a, bn])  # conv used twice: cannot fold
    c = keras.layers.Conv2D(4, 1, activation="relu", name="c")(out)
    out = keras.layers.BatchNormalization(name="bn_after_act")(c)  # conv has an activation
    model = keras.Model(inputs, out)
    randomize_batch_norms(model)
    fused = fuse(model)
    assert len(fused.layers) == len(model.layers)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), atol=1e-5)

    net = kcz.create_model("seresnext50_32x4d", input_shape=(32, 32, 3),
                           **kcz.get_spec("seresnext50_32x4d").test_overrides)
    randomize_batch_norms(net)
    run_model_saving_test(fuse(net), x[:, :, :, :3].repeat(4, 1).repeat(4, 2))


def test_rejects_non_models():
    with pytest.raises(TypeError, match="functional"):
        fuse(keras.layers.Dense(3))


def test_reparam_layers_are_merged():
    from keras_convzoo.layers import ReparamLargeKernelConv

    inputs = keras.Input((None, None, 8))
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="pw")(inputs)
    x = keras.layers.BatchNormalization(name="pw_bn")(x)
    x = ReparamLargeKernelConv(13, small_kernel=5, name="lk")(x)
    model = keras.Model(inputs, keras.layers.ReLU(name="out")(x))
    randomize_batch_norms(model)
    lk = model.get_layer("lk")
    rng = np.random.default_rng(5)
    for bn in (lk.large_bn, lk.small_bn):
        bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.normal(0, 0.2, 8),
                        rng.uniform(0.5, 2, 8)])
    fused = fuse(model)
    assert fused.get_layer("lk").deploy is True and len(fused.layers) == len(model.layers) - 1
    x = np.random.default_rng(0).standard_normal((2, 20, 17, 8)).astype("float32")
    np.testing.assert_allclose(fused(x).numpy(), model(x, training=False).numpy(), atol=1e-4)


def test_bn_before_pointwise_conv_is_folded_but_not_before_padded_conv():
    inputs = keras.Input((9, 9, 4))
    a = keras.layers.BatchNormalization(name="pre_bn")(inputs)
    a = keras.layers.Conv2D(6, 1, strides=2, use_bias=False, name="pw")(a)
    a = keras.layers.ReLU(name="relu1")(a)  # so the next BNs follow no conv
    b = keras.layers.BatchNormalization(name="pre_bn_padded")(a)
    b = keras.layers.Conv2D(6, 3, padding="same", name="conv3x3")(b)  # zero padding sees the BN shift
    b = keras.layers.ReLU(name="relu2")(b)
    c = keras.layers.BatchNormalization(name="pre_bn_grouped")(b)
    c = keras.layers.Conv2D(6, 1, groups=2, name="grouped_pw")(c)
    model = keras.Model(inputs, c)
    randomize_batch_norms(model, seed=3)
    fused = fuse(model)
    names = [l.name for l in fused.layers]
    assert "pre_bn" not in names and "pre_bn_padded" in names and "pre_bn_grouped" in names
    assert fused.get_layer("pw").use_bias
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 4)).astype("float32")
    np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), atol=1e-5)
