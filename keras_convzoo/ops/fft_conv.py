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

``fft_depthwise_conv`` pads, transforms the signal and the zero-padded
kernel with a real FFT of the padded length, multiplies by the conjugate
kernel spectrum (correlation) and inverts with the explicit length (the
official CCNN code omits the length, which is wrong for odd padded lengths),
then keeps the first ``L`` samples: no circular wrap-around reaches them.
Cost O(N log N) in the signal length instead of O(N K).
"""

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


def direct_depthwise_conv(x, kernel, causal=False):
    """Depthwise convolution with a per-channel kernel, "same" or causal output size.

    Args:
        x: tensor ``(batch, *spatial, channels)`` with 1 or 2 spatial dims.
        kernel: tensor ``(*taps, channels)`` (taps may be symbolic).
        causal: causal padding (1D only).

    Returns:
        Tensor of the shape of ``x``.
    """
    dims = len(x.shape) - 2
    if dims == 3:
        return fft_depthwise_conv(x, kernel, causal)  # TensorFlow has no depthwise 3D conv
    kernel = tf.cast(kernel, x.dtype)
    y = _pad(x, kernel, causal)
    if dims == 1:
        y = tf.nn.depthwise_conv2d(y[:, None], kernel[None, :, :, None], (1, 1, 1, 1), "VALID")
        return y[:, 0]
    return tf.nn.depthwise_conv2d(y, kernel[..., None], (1, 1, 1, 1), "VALID")


_RFFT = {1: (tf.signal.rfft, tf.signal.irfft), 2: (tf.signal.rfft2d, tf.signal.irfft2d),
         3: (tf.signal.rfft3d, tf.signal.irfft3d)}


def fft_depthwise_conv(x, kernel, causal=False):
    """FFT twin of ``direct_depthwise_conv`` (same arguments and result, float32 spectra)."""
    dims = len(x.shape) - 2
    if dims not in _RFFT:
        raise ValueError(f"Inputs must have 1, 2 or 3 spatial dims. Received: {dims}")
    dtype = x.dtype
    sizes = tf.shape(x)[1:-1]
    y = _pad(tf.cast(x, tf.float32), kernel, causal)
    padded = tf.shape(y)[1:-1]
    to_front = [0, dims + 1] + list(range(1, dims + 1))
    y = tf.transpose(y, to_front)  # (batch, channels, *padded)
    k = tf.transpose(tf.cast(kernel, tf.float32), [dims] + list(range(dims)))  # (channels, *taps)
    k_taps = tf.shape(k)[1:]
    k = tf.pad(k, tf.concat([[[0, 0]], tf.stack([tf.zeros_like(padded), padded - k_taps], axis=1)], 0))
    rfft, irfft = _RFFT[dims]
    spectrum = rfft(y, fft_length=padded) * tf.math.conj(rfft(k, fft_length=padded))[None]
    out = irfft(spectrum, fft_length=padded)
    out = out[(slice(None), slice(None)) + tuple(slice(0, sizes[i]) for i in range(dims))]
    out = tf.transpose(out, [0] + list(range(2, dims + 2)) + [1])
    return tf.cast(out, dtype)


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
    dtype = x.dtype
    sizes = tf.shape(x)[1:-1]
    y = _pad(tf.cast(x, tf.float32), kernel, causal)
    padded = tf.shape(y)[1:-1]
    y = tf.transpose(y, [0, dims + 1] + list(range(1, dims + 1)))  # (batch, in, *padded)
    k = tf.transpose(tf.cast(kernel, tf.float32), [dims + 1, dims] + list(range(dims)))  # (out, in, *taps)
    k_taps = tf.shape(k)[2:]
    k = tf.pad(k, tf.concat([[[0, 0], [0, 0]], tf.stack([tf.zeros_like(padded), padded - k_taps], axis=1)], 0))
    rfft, irfft = _RFFT[dims]
    spectrum = tf.einsum("bi...,oi...->bo...", rfft(y, fft_length=padded), tf.math.conj(rfft(k, fft_length=padded)))
    out = irfft(spectrum, fft_length=padded)
    out = out[(slice(None), slice(None)) + tuple(slice(0, sizes[i]) for i in range(dims))]
    out = tf.transpose(out, [0] + list(range(2, dims + 2)) + [1])
    return tf.cast(out, dtype)
