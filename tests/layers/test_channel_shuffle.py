"""ChannelShuffle and ChannelSplit (ShuffleNetV2's channel operations)."""

import numpy as np
import pytest

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers import ChannelShuffle, ChannelSplit
from keras_convzoo.testing import random_array, run_layer_test, run_model_saving_test, run_serialization_test


def _numpy_shuffle(x, groups):
    """Reference by explicit indices: channel i * n + j (group i) goes to j * groups + i."""
    channels = x.shape[-1]
    n = channels // groups
    out = np.empty_like(x)
    for i in range(groups):
        for j in range(n):
            out[..., j * groups + i] = x[..., i * n + j]
    return out


@pytest.mark.parametrize("groups, channels", [(2, 8), (3, 12), (4, 8), (8, 8), (1, 6)])
def test_matches_numpy_reference(groups, channels):
    x = random_array((2, 5, 3, channels))
    y = ChannelShuffle(groups)(x).numpy()
    np.testing.assert_array_equal(y, _numpy_shuffle(x, groups))
    if 1 < groups < channels:
        assert not np.array_equal(y, x)


def test_matches_torchvision_definition_on_nchw():
    # torchvision: x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)
    x = random_array((2, 12, 4, 5))  # NCHW
    expected = x.reshape(2, 3, 4, 4, 5).transpose(0, 2, 1, 3, 4).reshape(2, 12, 4, 5)
    y = ChannelShuffle(3)(x.transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(y, expected)


def test_none_spatial_dims_and_other_ranks():
    inputs = keras.Input((None, None, 12))
    model = keras.Model(inputs, ChannelShuffle(4)(inputs))
    assert tuple(model.output_shape) == (None, None, None, 12)
    for hw in [(1, 1), (7, 3), (16, 16)]:
        x = random_array((3,) + hw + (12,), seed=sum(hw))
        np.testing.assert_array_equal(model(x).numpy(), _numpy_shuffle(x, 4))
    seq = keras.Input((None, 6))
    seq_model = keras.Model(seq, ChannelShuffle(2)(seq))
    x = random_array((2, 5, 6))
    np.testing.assert_array_equal(seq_model(x).numpy(), _numpy_shuffle(x, 2))


def test_layer_contract():
    run_layer_test(
        ChannelShuffle,
        {"groups": 2},
        input_shape=(2, 6, 5, 8),
        expected_output_shape=(2, 6, 5, 8),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups=3, channels=8"):
        ChannelShuffle(3)(tf.zeros((1, 4, 4, 8)))
    with pytest.raises(ValueError, match="groups"):
        ChannelShuffle(0)
    with pytest.raises(ValueError, match="known channel"):
        ChannelShuffle(2).build((None, 4, 4, None))


def test_channel_split_matches_numpy_and_chunk():
    x = random_array((2, 4, 3, 12))
    parts = ChannelSplit(3)(x)
    assert len(parts) == 3
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(part.numpy(), x[..., 4 * i : 4 * (i + 1)])
    layer = ChannelSplit(2)
    assert layer.compute_output_shape((None, None, 7, 12)) == [(None, None, 7, 6)] * 2
    inputs = keras.Input((None, None, 12))
    left, right = layer(inputs)
    assert tuple(left.shape) == tuple(right.shape) == (None, None, None, 6)


def test_channel_split_contract():
    with pytest.raises(ValueError, match="num_splits=5, channels=12"):
        ChannelSplit(5)(tf.zeros((1, 2, 2, 12)))
    with pytest.raises(ValueError, match="num_splits"):
        ChannelSplit(0)
    run_serialization_test(ChannelSplit(4, name="split"))
    # inside a model that uses both outputs: save/load round trip and swapped halves
    inputs = keras.Input((None, None, 8))
    left, right = ChannelSplit(2, name="split")(inputs)
    swapped = keras.layers.Concatenate()([right, ChannelShuffle(2)(left)])
    model = keras.Model(inputs, swapped)
    x = random_array((2, 5, 6, 8), seed=4)
    expected = np.concatenate([x[..., 4:], _numpy_shuffle(x[..., :4], 2)], axis=-1)
    np.testing.assert_array_equal(model(x).numpy(), expected)
    run_model_saving_test(model, x)
