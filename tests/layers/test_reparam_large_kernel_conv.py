import numpy as np
import pytest

from keras_convzoo.backend import tf
from keras_convzoo.layers import ReparamLargeKernelConv
from keras_convzoo.testing import run_layer_test


def _randomise(layer, seed=0):
    """Random BN statistics and affine weights (fresh BNs are near-identities, which hide folding mistakes)."""
    rng = np.random.default_rng(seed)
    for bn in (layer.large_bn, layer.small_bn) if layer.small_kernel else (layer.large_bn,):
        c = bn.moving_mean.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c), rng.normal(0, 0.3, c),
                        rng.uniform(0.5, 2.0, c)])


def test_contract_both_forms():
    run_layer_test(ReparamLargeKernelConv, {"kernel_size": 7, "small_kernel": 3},
                   (2, 9, 11, 4), (2, 9, 11, 4), expected_num_trainable_weights=6,
                   expected_num_non_trainable_weights=4)
    run_layer_test(ReparamLargeKernelConv, {"kernel_size": 7, "strides": 2, "deploy": True},
                   (2, 9, 11, 4), (2, 5, 6, 4), expected_num_trainable_weights=2,
                   expected_num_non_trainable_weights=0)


@pytest.mark.parametrize("kernel,small,strides", [(31, 5, 1), (13, 5, 2), (7, None, 1)])
def test_merged_equals_unmerged(kernel, small, strides):
    x = np.random.default_rng(1).standard_normal((2, 40, 35, 6)).astype("float32")
    layer = ReparamLargeKernelConv(kernel, small_kernel=small, strides=strides)
    layer(x)
    _randomise(layer)  # also without a small kernel: the large kernel's BN must be folded too
    merged = ReparamLargeKernelConv(kernel, small_kernel=small, strides=strides, deploy=True)
    merged(x)
    merged.set_weights(layer.merged_weights())
    expected = layer(x, training=False).numpy()
    got = merged(x).numpy()
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


def test_training_uses_batch_statistics():
    x = np.random.default_rng(2).standard_normal((8, 12, 12, 3)).astype("float32") * 3 + 2
    layer = ReparamLargeKernelConv(5, small_kernel=3)
    y = layer(x, training=True).numpy()
    # each BN normalises its branch over the batch: sum of two ~N(0,1) branches -> mean ~0
    assert abs(y.mean()) < 1e-3
    before = np.array(layer.large_bn.moving_mean)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True))
    assert all(g is not None for g in tape.gradient(loss, layer.trainable_weights))
    assert not np.allclose(before, np.array(layer.large_bn.moving_mean))


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        ReparamLargeKernelConv(30)
    with pytest.raises(ValueError, match="small_kernel"):
        ReparamLargeKernelConv(7, small_kernel=9)
    with pytest.raises(ValueError, match="deploy"):
        ReparamLargeKernelConv(7, deploy="yes")
