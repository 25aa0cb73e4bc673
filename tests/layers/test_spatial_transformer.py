import math

import numpy as np
import pytest

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers import SpatialTransformer
from keras_convzoo.testing import random_array, run_layer_test, run_model_saving_test


def _localization(seed=0):
    return keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, strides=2, activation="relu",
                                kernel_initializer=keras.initializers.GlorotUniform(seed)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="tanh",
                               kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
        ]
    )


def _set_theta(layer, theta):
    """Zero affine kernel, bias ``theta``: the same transform for every sample."""
    kernel, _ = layer.affine.get_weights()
    layer.affine.set_weights([np.zeros_like(kernel), np.asarray(theta, "float32")])


def _numpy_affine_sample(images, theta, out_hw, align_corners):
    """Independent reference: loops over output pixels, bilinear, zeros outside."""
    n, h, w, c = images.shape
    out_h, out_w = out_hw

    def to_normalized(i, size):
        if align_corners:
            return 2.0 * i / max(size - 1, 1) - 1.0
        return (2.0 * i + 1.0) / size - 1.0

    def to_pixel(v, size):
        if align_corners:
            return (v + 1.0) / 2.0 * (size - 1)
        return ((v + 1.0) * size - 1.0) / 2.0

    out = np.zeros((n, out_h, out_w, c), "float64")
    a, b, tx, d, e, ty = theta
    for i in range(out_h):
        for j in range(out_w):
            xt, yt = to_normalized(j, out_w), to_normalized(i, out_h)
            px = to_pixel(a * xt + b * yt + tx, w)
            py = to_pixel(d * xt + e * yt + ty, h)
            x0, y0 = math.floor(px), math.floor(py)
            for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                weight = (1 - abs(px - xx)) * (1 - abs(py - yy))
                if 0 <= yy < h and 0 <= xx < w:
                    out[:, i, j] += weight * images[:, yy, xx]
    return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_at_initialisation(align_corners):
    x = random_array((3, 9, 12, 5))
    layer = SpatialTransformer(_localization(), align_corners=align_corners)
    y = layer(x).numpy()
    np.testing.assert_allclose(y, x, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(layer.affine.get_weights()[0], 0.0)
    np.testing.assert_array_equal(layer.affine.get_weights()[1], [1, 0, 0, 0, 1, 0])


def test_integer_translation_moves_content():
    # c = 2 * k / W samples k pixels to the right: out[:, j] = in[:, j + k], zeros past the edge.
    x = random_array((2, 6, 8, 3), seed=2)
    layer = SpatialTransformer(_localization())
    layer(x)
    _set_theta(layer, [1, 0, 2 * 3 / 8, 0, 1, -2 * 1 / 6])  # 3 right, 1 up
    y = layer(x).numpy()
    np.testing.assert_allclose(y[:, 1:, :5], x[:, :-1, 3:], atol=1e-5)
    np.testing.assert_allclose(y[:, :, 5:], 0.0, atol=1e-6)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "theta, out_hw",
    [
        ((0.7, 0.0, 0.13, 0.0, 1.3, -0.21), (7, 9)),  # scale + translation, fractional
        ((0.8, -0.35, 0.05, 0.4, 0.9, 0.1), (5, 11)),  # rotation-like, resized output
        ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (4, 6)),  # identity theta, downsizing
    ],
)
def test_matches_numpy_bilinear_reference(theta, out_hw, align_corners):
    x = random_array((2, 7, 9, 3), seed=5)
    layer = SpatialTransformer(_localization(), output_size=out_hw, align_corners=align_corners)
    layer(x)
    _set_theta(layer, theta)
    y = layer(x).numpy()
    assert y.shape == (2,) + out_hw + (3,)
    expected = _numpy_affine_sample(x, theta, out_hw, align_corners)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


def test_align_corners_changes_resizing():
    x = random_array((1, 6, 6, 2), seed=9)
    outputs = []
    for align in (False, True):
        layer = SpatialTransformer(_localization(), output_size=(4, 4), align_corners=align)
        outputs.append(layer(x).numpy())
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
    # with align_corners=True the corners of the output are the corner pixels of the input
    np.testing.assert_allclose(outputs[1][0, [0, 0, -1, -1], [0, -1, 0, -1]],
                               x[0, [0, 0, -1, -1], [0, -1, 0, -1]], atol=1e-5)


def test_gradients_reach_localization_and_input():
    x = tf.constant(random_array((2, 10, 10, 3), seed=3))
    layer = SpatialTransformer(_localization(), output_size=(8, 8))
    layer(x)
    kernel, bias = layer.affine.get_weights()
    # at initialisation the zero affine kernel stops gradients into the
    # localisation network (by design); give it a small kernel first
    layer.affine.set_weights([0.3 * random_array(kernel.shape, seed=4), bias])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(layer(x)) * tf.reshape(tf.range(64.0) / 64, (1, 8, 8, 1)))
    grads = tape.gradient(loss, layer.localization.trainable_weights + layer.affine.trainable_weights)
    assert len(grads) == len(layer.trainable_weights) == 6
    for weight, grad in zip(layer.trainable_weights, grads):
        assert grad is not None, weight.name
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0, weight.name
    input_grad = tf.convert_to_tensor(tape.gradient(loss, x)).numpy()
    assert np.all(np.isfinite(input_grad)) and np.abs(input_grad).max() > 0


def test_none_spatial_dims_and_output_size():
    inputs = keras.Input((None, None, 4))
    free = SpatialTransformer(_localization())
    fixed = SpatialTransformer(_localization(), output_size=(5, 7))
    model = keras.Model(inputs, [free(inputs), fixed(inputs)])
    assert tuple(model.outputs[0].shape) == (None, None, None, 4)
    assert tuple(model.outputs[1].shape) == (None, 5, 7, 4)
    for hw in [(8, 8), (13, 6)]:
        x = random_array((2,) + hw + (4,), seed=hw[1])
        same, resized = model(x)
        np.testing.assert_allclose(same.numpy(), x, atol=1e-5)
        assert tuple(resized.shape) == (2, 5, 7, 4)
    assert fixed.compute_output_shape((None, None, None, 4)) == (None, 5, 7, 4)
    assert free.compute_output_shape((3, 9, None, 4)) == (3, 9, None, 4)


def test_layer_contract():
    run_layer_test(
        SpatialTransformer,
        {"localization": _localization(), "output_size": (6, 5)},
        input_shape=(2, 8, 8, 3),
        expected_output_shape=(2, 6, 5, 3),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
    )


def test_save_and_load_round_trip_with_a_learned_transform():
    inputs = keras.Input((12, 12, 3))
    layer = SpatialTransformer(_localization(), output_size=(10, 10), align_corners=True)
    model = keras.Model(inputs, layer(inputs))
    kernel, bias = layer.affine.get_weights()
    layer.affine.set_weights([0.5 * random_array(kernel.shape, seed=6), bias + 0.1])
    x = random_array((2, 12, 12, 3), seed=7)
    assert np.abs(model(x).numpy()[:, :1] - x[:, :1, :10]).max() > 1e-2  # not the identity
    restored = run_model_saving_test(model, x, atol=1e-5)
    revived = [lay for lay in restored.layers if isinstance(lay, SpatialTransformer)][0]
    assert revived.output_size == (10, 10) and revived.align_corners is True
    assert isinstance(revived.localization, keras.Sequential)


def test_invalid_arguments():
    with pytest.raises(TypeError, match="localization"):
        SpatialTransformer("conv")
    with pytest.raises(ValueError, match="output_size"):
        SpatialTransformer(_localization(), output_size=(0, 4))
    with pytest.raises(TypeError, match="align_corners"):
        SpatialTransformer(_localization(), align_corners=1)
    conv_only = keras.Sequential([keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="batch, features"):
        SpatialTransformer(conv_only)(tf.zeros((1, 8, 8, 3)))
