"""Batch normalisation at inference as a per-channel affine map."""

import numpy as np


def bn_inference_affine(bn):
    """Returns ``(scale, shift)`` with ``bn(x, training=False) == x * scale + shift``.

    Used to fold a BatchNormalization into the convolution before it
    (``deploy.fuse``, ``layers.ReparamLargeKernelConv.merged_weights``).

    Args:
        bn: a built ``BatchNormalization`` layer over the last axis.

    Returns:
        Two float32 numpy vectors of the channel count.

    Example:
    >>> scale, shift = bn_inference_affine(model.get_layer("stem_bn"))
    """
    mean = np.array(bn.moving_mean, dtype="float32")
    var = np.array(bn.moving_variance, dtype="float32")
    gamma = np.array(bn.gamma, dtype="float32") if bn.scale else np.ones_like(mean)
    beta = np.array(bn.beta, dtype="float32") if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale
