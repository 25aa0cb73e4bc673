"""Coordinate grids and the Gaussian-mask crop rule of continuous-kernel convolutions.

The kernel network of a continuous convolution (``layers.MAGNet``) is
evaluated at tap positions in [-1, 1]. The official CCNN code (PyTorch) uses
``torch.linspace`` and crops the grid to where its Gaussian mask exceeds a
threshold; both are reproduced here exactly, in float32, because MAGNet
multiplies positions by frequencies around 1e5: one ulp of a position moves
the outputs measurably (see ``../shared/ccnn_notes.md`` sections 2 and 3).
"""

import numpy as np

from keras_convzoo.backend import tf


def linspace(n):
    """``n`` float32 points over [-1, 1], bit-identical to ``torch.linspace(-1, 1, n)``.

    The step is rounded to float32 first; the first half of the points is
    ``-1 + step * i``, the second half ``1 - step * (n - 1 - i)``, each
    computed in float64 and rounded to float32 once.

    Args:
        n: number of points (>= 1).

    Returns:
        A float32 numpy vector of length ``n``.

    Example:
    >>> linspace(5)
    array([-1. , -0.5,  0. ,  0.5,  1. ], dtype=float32)
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"`n` must be >= 1. Received: n={n}")
    if n == 1:
        return np.array([-1.0], np.float32)
    step = np.float64(np.float32(2.0 / (n - 1)))
    i = np.arange(n, dtype=np.float64)
    values = np.where(i < n // 2, -1.0 + step * i, 1.0 - step * (n - 1 - i))
    return values.astype(np.float32)


def linspace_tf(n):
    """TensorFlow twin of ``linspace`` for a (possibly symbolic) int32 ``n >= 2``."""
    n64 = tf.cast(n, tf.float64)
    step = tf.cast(tf.cast(2.0 / (n64 - 1.0), tf.float32), tf.float64)
    i = tf.range(n64, dtype=tf.float64)
    half = tf.cast(n // 2, tf.float64)
    values = tf.where(i < half, -1.0 + step * i, 1.0 - step * (n64 - 1.0 - i))
    return tf.cast(values, tf.float32)


def threshold_factor(threshold):
    """``sqrt(-2 ln threshold)`` in float32: a Gaussian of width sigma exceeds ``threshold`` within sigma times this."""
    t = np.float32(threshold)
    return np.float32(np.sqrt(np.float32(-2.0) * np.log(t)))


def crop_ranges(sigma, sizes, causal, threshold=0.1, mean=None):
    """The official FlexConv crop of a grid to where its Gaussian mask exceeds ``threshold``.

    Per dimension ``d`` with ``n = sizes[d]`` points, step ``2 / (n - 1)``
    (float32) and root distance ``r = sigma[d] * sqrt(-2 ln threshold)``:
    causal (1D, mask centred at +1): lower root ``1 - r``; if it lies inside
    (-1, 1) the taps from ``floor((root + 1) / step)`` to the end are kept.
    Centred (mask at 0): if ``r < 1`` the ``2 * idx - 1`` central taps are
    kept, ``idx = ceil(r / step + 1e-8)``, i.e. ``[n//2 - idx + 1, n//2 + idx)``.
    Everything is evaluated in float32, as in the reference.

    Args:
        sigma: float32 tensor ``(dims,)`` of mask widths (may be symbolic).
        sizes: grid points per dimension (python ints or int tensors).
        causal: bool (1D only).
        threshold: mask threshold.
        mean: mask centre per dim; default +1 (causal) or 0.

    Returns:
        ``(starts, stops)``: two int32 tensors of shape ``(dims,)``.
    """
    factor = tf.constant(threshold_factor(threshold), tf.float32)
    starts, stops = [], []
    for d, n in enumerate(sizes):
        n = tf.cast(n, tf.int32)
        step = tf.constant(2.0, tf.float32) / tf.cast(tf.maximum(n - 1, 1), tf.float32)
        aux = sigma[d] * factor
        if causal:
            centre = tf.constant(1.0 if mean is None else mean[d], tf.float32)
            root = tf.minimum(centre - aux, centre + aux)
            inside = tf.abs(root) < 1.0
            index = tf.cast(tf.floor((root + 1.0) / step), tf.int32)
            starts.append(tf.where(inside, index, 0))
            stops.append(n)
        else:
            centre = tf.constant(0.0 if mean is None else mean[d], tf.float32)
            root = tf.maximum(tf.abs(centre - aux), tf.abs(centre + aux))
            inside = root < 1.0
            index = tf.cast(tf.math.ceil(root / step + 1e-8), tf.int32)
            mid = n // 2
            starts.append(tf.where(inside, mid - index + 1, 0))
            stops.append(tf.where(inside, mid + index, n))
    return tf.stack(starts), tf.stack(stops)


def crop_sizes(sigma, sizes, causal, threshold=0.1, mean=None):
    """Numpy float32 twin of ``crop_ranges`` returning the kept taps per dimension (python ints).

    Used at build time (the sqrt(1/K) initialisation needs K) and in tests.
    """
    sigma = np.asarray(sigma, np.float32)
    factor = threshold_factor(threshold)
    taps = []
    for d, n in enumerate(sizes):
        step = np.float32(2.0) / np.float32(max(n - 1, 1))
        aux = np.float32(sigma[d] * factor)
        if causal:
            centre = np.float32(1.0 if mean is None else mean[d])
            root = min(np.float32(centre - aux), np.float32(centre + aux))
            start = int(np.floor(np.float32(np.float32(root + np.float32(1.0)) / step))) if abs(root) < 1 else 0
            taps.append(n - start)
        else:
            centre = np.float32(0.0 if mean is None else mean[d])
            root = max(abs(np.float32(centre - aux)), abs(np.float32(centre + aux)))
            if root < 1:
                index = int(np.ceil(np.float32(np.float32(root / step) + np.float32(1e-8))))
                taps.append(2 * index - 1)
            else:
                taps.append(n)
    return taps
