import numpy as np
import pytest

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers import ShiftConv2D
from keras_convzoo.ops.shift import shift2d, shift_groups
from keras_convzoo.testing import random_array, run_layer_test

# The documented assignment, written out independently of the implementation:
# neighbours of the 3x3 window in row-major order, centre skipped, then the centre.
NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _one_hot_depthwise_kernel(channels):
    """(3, 3, C, 1) kernel: channel c is one-hot at (dy + 1, dx + 1) of its group."""
    g = max(1, channels // 9)
    kernel = np.zeros((3, 3, channels, 1), "float32")
    for c in range(channels):
        k = c // g
        dy, dx = NEIGHBOURS[k] if k < 8 else (0, 0)
        kernel[dy + 1, dx + 1, c, 0] = 1.0
    return kernel


def test_shift_groups_follow_the_documented_assignment():
    assert shift_groups(8) == tuple((k, k + 1, dy, dx) for k, (dy, dx) in enumerate(NEIGHBOURS)) + (
        (8, 8, 0, 0),
    )
    assert shift_groups(18)[3] == (6, 8, 0, -1) and shift_groups(18)[-1] == (16, 18, 0, 0)
    assert shift_groups(20)[-1] == (16, 20, 0, 0)  # remainder 2 goes to the centre
    assert shift_groups(64)[7] == (49, 56, 1, 1) and shift_groups(64)[-1] == (56, 64, 0, 0)
    for bad in (7, 0, 9.0, True):
        with pytest.raises(ValueError, match="channels"):
            shift_groups(bad)


def test_shift2d_moves_content_and_fills_zeros():
    x = np.arange(1.0, 26.0, dtype="float32").reshape(1, 5, 5, 1) * np.ones((1, 1, 1, 9), "float32")
    y = shift2d(x).numpy()
    # channel 1 reads from (y - 1, x): row 0 is zero, row r equals input row r - 1
    np.testing.assert_array_equal(y[0, 0, :, 1], 0.0)
    np.testing.assert_array_equal(y[0, 1:, :, 1], x[0, :-1, :, 1])
    # channel 4 reads from (y, x + 1): last column zero
    np.testing.assert_array_equal(y[0, :, -1, 4], 0.0)
    np.testing.assert_array_equal(y[0, :, :-1, 4], x[0, :, 1:, 4])
    np.testing.assert_array_equal(y[..., 8], x[..., 8])  # the centre group is untouched
    assert np.abs(y).sum() < np.abs(x).sum()  # border values were dropped, nothing added


@pytest.mark.parametrize(
    "channels, filters, strides, size",
    [(8, 5, 1, (9, 7)), (9, 4, 1, (6, 6)), (20, 12, 2, (11, 8)), (31, 7, (2, 1), (5, 9))],
)
def test_equals_one_hot_depthwise_then_pointwise(channels, filters, strides, size):
    x = random_array((2,) + size + (channels,), seed=channels)
    layer = ShiftConv2D(filters, strides=strides, bias_initializer="random_normal")
    y = layer(x).numpy()
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
    pointwise = keras.layers.Conv2D(filters, 1, strides=strides)
    shifted = depthwise(x)
    depthwise.set_weights([_one_hot_depthwise_kernel(channels)])
    pointwise(shifted)
    pointwise.set_weights(layer.get_weights())  # same layout as Conv2D(filters, 1)
    expected = pointwise(depthwise(x)).numpy()
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(shift2d(x).numpy(), depthwise(x).numpy(), atol=0, rtol=0)


def test_shapes_with_none_spatial_dims():
    inputs = keras.Input((None, None, 12))
    layer = ShiftConv2D(6, strides=2)
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, None, None, 6)
    model = keras.Model(inputs, outputs)
    for hw in [(1, 1), (5, 7), (16, 16), (33, 20)]:
        y = model(random_array((2,) + hw + (12,)))
        assert tuple(y.shape) == (2, -(-hw[0] // 2), -(-hw[1] // 2), 6)
        assert layer.compute_output_shape((2,) + hw + (12,)) == tuple(y.shape)
    assert layer.compute_output_shape((None, None, 9, 12)) == (None, None, 5, 6)


def test_layer_contract():
    run_layer_test(
        ShiftConv2D,
        {"filters": 16},
        input_shape=(2, 8, 8, 8),
        expected_output_shape=(2, 8, 8, 16),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
    run_layer_test(
        ShiftConv2D,
        {"filters": 4, "strides": 2, "use_bias": False, "kernel_initializer": "he_normal"},
        input_shape=(1, 7, 6, 10),
        expected_output_shape=(1, 4, 3, 4),
        expected_num_trainable_weights=1,
    )


def test_parameters_are_those_of_the_pointwise_conv_only():
    layer = ShiftConv2D(32)
    layer.build((None, 16, 16, 18))
    assert layer.count_params() == 18 * 32 + 32


def test_regularizers_add_losses():
    layer = ShiftConv2D(4, kernel_regularizer="l2", bias_regularizer="l1")
    layer(random_array((1, 4, 4, 8)))
    assert len(layer.losses) == 2
    config = layer.get_config()
    assert config["kernel_regularizer"] is not None and config["bias_regularizer"] is not None


def test_invalid_arguments():
    with pytest.raises(ValueError, match="filters"):
        ShiftConv2D(0)
    with pytest.raises(ValueError, match="strides"):
        ShiftConv2D(4, strides=(1, 2, 3))
    with pytest.raises(TypeError, match="use_bias"):
        ShiftConv2D(4, use_bias="yes")
    with pytest.raises(ValueError, match="at least 8"):
        ShiftConv2D(4)(tf.zeros((1, 4, 4, 7)))
