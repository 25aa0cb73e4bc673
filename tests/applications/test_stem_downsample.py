"""``downsample="pool"|"conv"`` on the residual families (ResNetConfig)."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", ["resnext50_32x4d", "seresnet18"])
def test_resnext50_and_seresnet_downsample_conv_tiny(name):
    tiny = kcz.get_spec(name).test_overrides
    c = tiny["stem_width"]
    pool = kcz.create_model(name, input_shape=(None, None, 3), classes=3, **tiny)
    conv = kcz.create_model(name, input_shape=(None, None, 3), classes=3, downsample="conv", **tiny)
    assert _trainable(conv) - _trainable(pool) == 9 * c * c + 2 * c  # conv (no bias) + BN gamma/beta
    assert conv.count_params() - pool.count_params() == 9 * c * c + 4 * c  # + BN statistics
    for hw in [(33, 47), (64, 64)]:
        x = np.random.default_rng(0).standard_normal((2,) + hw + (3,)).astype("float32")
        y = conv(x, training=False).numpy()
        assert y.shape == pool(x, training=False).shape == (2, 3) and np.all(np.isfinite(y))
    assert conv.get_layer("stem_pool_conv").strides == (2, 2)
    assert conv.get_layer("stem_pool_conv").kernel_size == (3, 3)
    assert conv.get_layer("stem_pool_relu") is not None
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in conv.layers)
    spec = kcz.get_spec(name).with_config(downsample="conv", **tiny)
    _, features = spec.body(keras.Input((64, 64, 3)), spec.config)
    assert tuple(features["stem"].shape) == (None, 16, 16, c)


def test_resnext50_downsample_conv_full_size():
    model = kcz.ResNeXt50(downsample="conv", include_top=True)
    assert _trainable(model) == 25_028_904 + 9 * 64 * 64 + 2 * 64  # 25,065,896
    assert tuple(model.output_shape) == (None, 1000)


def test_resnext50_invalid_downsample():
    tiny = kcz.get_spec("resnext50_32x4d").test_overrides
    with pytest.raises(ValueError, match="downsample"):
        kcz.ResNeXt50(downsample="stride", **tiny)
    with pytest.raises(ValueError, match="downsample"):
        kcz.create_model("seresnet50", downsample=None)
    assert kcz.get_spec("resnext50_32x4d").config.downsample == "pool"
