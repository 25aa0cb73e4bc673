"""Depthwise "same"/causal convolution of channels-last signals, direct or through the FFT.

Both functions compute the cross-correlation (no kernel flip, as
``Conv*D`` and PyTorch) of a ``(batch, *spatial, channels)`` input with one
kernel per channel ``(*taps, channels)`` whose size may be symbolic (the
continuous-kernel layers crop their kernels at run time). The output has
the input's spatial size:

- centred (``causal=False``): the input is zero-padded by ``(k - 1) // 2``
  before and ``k // 2`` after along each axis (``k // 2`` both sides for the
  odd kernels the layers use);
- causal (1D): padded by ``k - 1`` before, so output step ``t`` sees inputs
  ``t - k + 1 .. t`` and the last tap multiplies the current step.

``fft_depthwise_conv`` transforms the signal and the kernel with a real FFT
of a 5-smooth length >= ``L + k - 1`` (the transform zero-extends both), the
kernel reversed and rolled so that tap ``j`` sits at offset
``pad_before - j``: its spectrum is the conjugate of the spectrum of the
kernel placed at ``j - pad_before``, so the product with the signal's
spectrum is the correlation, without a complex conjugation in the graph. It
inverts with the explicit length (the official CCNN code omits it, which is
wrong for odd padded lengths) and keeps the first ``L`` samples: no circular
wrap-around reaches them. Cost O(N log N) in the signal length instead of
O(N k).

Deployment: TFLite has no inverse real FFT builtin and tf2onnx no handler
for it, so the FFT path does not convert (neither through
``keras_convzoo.export`` nor Keras' ``model.export``); the continuous-kernel
layers keep it out of their graphs where no kernel they can generate is
large enough to take it, and their fused form (``keras_convzoo.deploy.fuse``)
convolves directly. The FFT lengths are computed with comparisons and a
minimum (no ``searchsorted``), and the kernel spectrum needs no ``Conj``.
"""

import numpy as np

from keras_convzoo.backend import tf


def _pad_amounts(taps, causal):
    if causal:
        return [[taps[0] - 1, 0]]
    return [[(k - 1) // 2, k // 2] for k in taps]


def _kernel_taps(kernel, dims):
    shape = tf.shape(kernel)
    return [shape[i] for i in range(dims)]


def _pad(x, kernel, causal):
    dims = len(x.shape) - 2
    if causal and dims != 1:
        raise ValueError(f"Causal convolution is 1D only. Received an input of {dims} spatial dims.")
    pads = _pad_amounts(_kernel_taps(kernel, dims), causal)
    return tf.pad(x, [[0, 0]] + pads + [[0, 0]])


def direct_depthwise_conv(x, kernel, causal=False, max_taps=None):
    """Depthwise convolution with a per-channel kernel, "same" or causal output size.

    Args:
        x: tensor ``(batch, *spatial, channels)`` with 1 to 3 spatial dims.
        kernel: tensor ``(*taps, channels)`` (taps may be symbolic).
        causal: causal padding (1D only).
        max_taps: optional static upper bound of the taps per dim (python
            ints). Used in 3D only, where the convolution is a sum over the
            depth taps of 2D depthwise convolutions: with a static depth (the
            kernel's, else this bound) the sum is unrolled in the graph,
            which converts to TFLite and ONNX; without one it is a
            ``tf.while_loop``.

    Returns:
        Tensor of the shape of ``x``.
    """
    dims = len(x.shape) - 2
    kernel = tf.cast(kernel, x.dtype)
    y = _pad(x, kernel, causal)
    if dims == 3:
        return _depthwise_conv3d(x, y, kernel, None if max_taps is None else int(max_taps[0]))
    if dims == 1:
        y = tf.nn.depthwise_conv2d(y[:, None], kernel[None, :, :, None], (1, 1, 1, 1), "VALID")
        return y[:, 0]
    return tf.nn.depthwise_conv2d(y, kernel[..., None], (1, 1, 1, 1), "VALID")


def _depthwise_conv3d(x, y, kernel, max_depth_taps=None):
    """"Same" depthwise 3D correlation of ``x`` (padded: ``y``): a sum over depth taps of 2D depthwise convs.

    TensorFlow has no depthwise 3D convolution and no gradient for its 3D
    FFTs; this sum over the (possibly symbolic) depth taps is differentiable.
    With static depth taps the sum is a Python loop. With a static bound
    only, the loop runs to the bound: a tap the kernel does not have
    convolves an empty window and a ``tf.cond`` skips its addition, so no
    work is spent on it and no convolution sits inside a branch (tf2onnx
    cannot convert one whose filter shape is not static there). Without
    either it is a ``tf.while_loop``, which TFLite and ONNX cannot convert
    here (the filter of a loop body's convolution has no static shape).
    """
    out_shape = tf.shape(x)
    depth = x.shape[1] if x.shape[1] is not None else out_shape[1]
    taps = tf.shape(kernel)[0]
    flat_shape = tf.concat([[-1], tf.shape(y)[2:]], 0)  # a window's (batch * depth, height, width, channels)

    def conv(i, length):
        flat = tf.reshape(y[:, i : i + length], flat_shape)
        return tf.nn.depthwise_conv2d(flat, kernel[i][..., None], (1, 1, 1, 1), "VALID")

    static_taps = kernel.shape[0]
    if static_taps is not None:
        total = tf.reshape(conv(0, depth), out_shape)
        for i in range(1, int(static_taps)):
            total = total + tf.reshape(conv(i, depth), out_shape)
        return total
    if max_depth_taps is not None:
        total = tf.reshape(conv(0, depth), out_shape)  # a kernel has at least one tap
        for i in range(1, max_depth_taps):
            active = i < taps
            part = conv(tf.minimum(i, taps - 1), tf.where(active, depth, 0))  # empty when there is no tap i
            total = tf.cond(active, lambda p=part, t=total: t + tf.reshape(p, out_shape), lambda t=total: t)
        return total

    def body(i, total):
        return i + 1, total + tf.reshape(conv(i, depth), out_shape)

    _, total = tf.while_loop(lambda i, _: i < taps, body, (tf.constant(0), tf.zeros(out_shape, y.dtype)))
    return total


_RFFT = {1: (tf.signal.rfft, tf.signal.irfft), 2: (tf.signal.rfft2d, tf.signal.irfft2d),
         3: (tf.signal.rfft3d, tf.signal.irfft3d)}


def _smooth_numbers(limit=1 << 24):
    """Sorted 2^a 3^b 5^c up to ``limit``: FFT lengths pocketfft transforms fastest."""
    values, p2 = [], 1
    while p2 <= limit:
        p3 = p2
        while p3 <= limit:
            p5 = p3
            while p5 <= limit:
                values.append(p5)
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return np.array(sorted(values), np.int32)


_SMOOTH = _smooth_numbers()


def fft_lengths(sizes, taps):
    """FFT length per axis: the smallest 5-smooth number >= size + taps - 1 (no wrap-around reaches the output).

    Computed as the minimum of the 5-smooth numbers that are large enough
    (comparison, select, reduce-min: ops every converter maps), not with
    ``tf.searchsorted`` (``LowerBound``, which TFLite and ONNX lack).

    Args:
        sizes: signal length per axis (ints or an int tensor).
        taps: kernel taps per axis (ints or an int tensor).

    Returns:
        An int32 tensor, one length per axis.
    """
    needed = tf.cast(sizes, tf.int32) + tf.cast(taps, tf.int32) - 1
    smooth = tf.constant(_SMOOTH)
    candidates = tf.where(smooth[None] >= needed[:, None], smooth[None], tf.constant(_SMOOTH[-1]))
    return tf.reduce_min(candidates, axis=1)


def _kernel_spectrum(kernel, lengths, causal, rfft, leading):
    """Conjugate spectrum of a channels-first kernel ``(*leading, *taps)`` placed for "same"/causal correlation.

    The kernel is reversed, zero-padded to the FFT lengths and rolled so that
    tap ``j`` sits at offset ``pad_before - j`` (modulo the length): for a
    real kernel that is the conjugate of the spectrum of the kernel placed at
    ``j - pad_before``, the placement under which the input needs no padding
    (the FFT's own zero extension supplies it). Causal kernels need no roll.
    """
    dims = len(lengths.shape) and int(lengths.shape[0])
    axes = list(range(leading, leading + dims))
    taps = tf.shape(kernel)[leading:]
    paddings = tf.concat([tf.zeros([leading, 2], tf.int32), tf.stack([tf.zeros_like(taps), lengths - taps], 1)], 0)
    padded = tf.pad(tf.reverse(kernel, axis=axes), paddings)
    if not causal:  # reversed tap j is at index taps - 1 - j; it belongs at pad_before - j
        padded = tf.roll(padded, shift=-(taps // 2), axis=axes)  # taps - 1 - (taps - 1) // 2 == taps // 2
    return rfft(padded, fft_length=lengths)


def fft_depthwise_conv(x, kernel, causal=False, pointwise=None):
    """FFT twin of ``direct_depthwise_conv`` (same arguments and result, float32 spectra).

    Args:
        x, kernel, causal: see ``direct_depthwise_conv``.
        pointwise: optional ``(channels, out_channels)`` matrix applied after
            the depthwise convolution (a separable convolution without the
            bias in between); fusing it saves the transpose back to
            channels-last, which costs as much as the FFTs on CPU.

    Returns:
        ``(batch, *spatial, channels)``, or ``out_channels`` with ``pointwise``.
    """
    dims = len(x.shape) - 2
    if dims not in _RFFT:
        raise ValueError(f"Inputs must have 1, 2 or 3 spatial dims. Received: {dims}")
    if causal and dims != 1:
        raise ValueError(f"Causal convolution is 1D only. Received an input of {dims} spatial dims.")
    dtype = x.dtype
    sizes = tf.shape(x)[1:-1]
    lengths = fft_lengths(sizes, tf.shape(kernel)[:dims])
    rfft, irfft = _RFFT[dims]
    y = tf.transpose(tf.cast(x, tf.float32), [0, dims + 1] + list(range(1, dims + 1)))  # (batch, channels, *sizes)
    k = tf.transpose(tf.cast(kernel, tf.float32), [dims] + list(range(dims)))  # (channels, *taps)
    out = irfft(rfft(y, fft_length=lengths) * _kernel_spectrum(k, lengths, causal, rfft, 1)[None], fft_length=lengths)
    out = out[(slice(None), slice(None)) + tuple(slice(0, sizes[i]) for i in range(dims))]
    if pointwise is None:
        return tf.cast(tf.transpose(out, [0] + list(range(2, dims + 2)) + [1]), dtype)
    batch_channels = tf.shape(out)[:2]
    flat = tf.reshape(out, tf.concat([batch_channels, [-1]], 0))  # (batch, channels, positions)
    mixed = tf.matmul(flat, tf.cast(pointwise, tf.float32), transpose_a=True)  # (batch, positions, out)
    return tf.cast(tf.reshape(mixed, tf.concat([tf.shape(x)[:1], sizes, [-1]], 0)), dtype)


def direct_conv(x, kernel, causal=False):
    """Dense convolution, kernel ``(*taps, in_channels, out_channels)``, "same" or causal size.

    Args:
        x: tensor ``(batch, *spatial, in_channels)``, 1 to 3 spatial dims.
        kernel: tensor ``(*taps, in_channels, out_channels)`` (taps may be symbolic).
        causal: causal padding (1D only).

    Returns:
        Tensor ``(batch, *spatial, out_channels)``.
    """
    kernel = tf.cast(kernel, x.dtype)
    y = _pad(x, kernel, causal)
    dims = len(x.shape) - 2
    if dims == 1:
        return tf.nn.conv1d(y, kernel, 1, "VALID")
    if dims == 2:
        return tf.nn.conv2d(y, kernel, 1, "VALID")
    # tf.nn.convolution's eager Conv3D gradient loses data_format (TF 2.21): call conv3d with it.
    return tf.nn.conv3d(y, kernel, [1, 1, 1, 1, 1], "VALID", data_format="NDHWC")


def fft_conv(x, kernel, causal=False):
    """FFT twin of ``direct_conv``: channels mixed in the frequency domain."""
    dims = len(x.shape) - 2
    if dims not in _RFFT:
        raise ValueError(f"Inputs must have 1, 2 or 3 spatial dims. Received: {dims}")
    if causal and dims != 1:
        raise ValueError(f"Causal convolution is 1D only. Received an input of {dims} spatial dims.")
    dtype = x.dtype
    sizes = tf.shape(x)[1:-1]
    lengths = fft_lengths(sizes, tf.shape(kernel)[:dims])
    rfft, irfft = _RFFT[dims]
    y = tf.transpose(tf.cast(x, tf.float32), [0, dims + 1] + list(range(1, dims + 1)))  # (batch, in, *sizes)
    k = tf.transpose(tf.cast(kernel, tf.float32), [dims + 1, dims] + list(range(dims)))  # (out, in, *taps)
    spectrum = tf.einsum("bi...,oi...->bo...", rfft(y, fft_length=lengths), _kernel_spectrum(k, lengths, causal, rfft, 2))
    out = irfft(spectrum, fft_length=lengths)
    out = out[(slice(None), slice(None)) + tuple(slice(0, sizes[i]) for i in range(dims))]
    return tf.cast(tf.transpose(out, [0] + list(range(2, dims + 2)) + [1]), dtype)
