import numpy as np
import pytest

from keras_convzoo.backend import tf
from keras_convzoo.layers import ReparamLargeKernelConv
from keras_convzoo.testing import random_array, run_layer_test


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


def test_training_step_takes_the_fast_kernel_gradient_and_matches(monkeypatch):
    """Both kernels (13x13 and 5x5) get ops.depthwise's filter gradient in training; gradients equal TensorFlow's."""
    from keras_convzoo.layers import reparam_large_kernel_conv as module
    from keras_convzoo.ops import depthwise as depthwise_ops

    layer = ReparamLargeKernelConv(kernel_size=13, small_kernel=5)
    x = tf.constant(random_array((2, 9, 9, 4), seed=7))
    layer(x)

    def grads():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x, training=True)))
        return tape.gradient(loss, [x] + layer.trainable_weights)

    calls = []
    real = depthwise_ops.depthwise_filter_gradient
    monkeypatch.setattr(depthwise_ops, "depthwise_filter_gradient", lambda *a: calls.append(a[2]) or real(*a))
    fast = grads()
    assert sorted(calls) == [(5, 5), (13, 13)]
    monkeypatch.setattr(module, "fast_filter_gradient_applies", lambda *a, **k: False)
    reference = grads()
    for a, b in zip(fast, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
