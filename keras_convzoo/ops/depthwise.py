"""Depthwise 2D convolution as a sum of shifted products, the fast form under XLA on CPU.

XLA's CPU backend has no fast kernel for grouped convolutions: a depthwise
``tf.nn.depthwise_conv2d`` compiled with ``jit_compile=True`` runs through a
naive loop emitter, many times slower than TensorFlow's own kernel (the
measurements are on the documentation's benchmarks page). The same
cross-correlation written as
``sum_{i,j} x[i::s, j::s] * w[i, j]`` is one elementwise loop that XLA fuses
and vectorises, so it is as fast as TensorFlow's own depthwise kernel
outside XLA. Outside XLA the shifted sum is slower (k*k separate ops), so
``layers.DepthwiseConv2D`` uses it only inside an XLA compilation on CPU.
"""

import numpy as np

from keras_convzoo.backend import tf

#: Largest number of kernel taps written as a shifted sum (beyond it the
#: unrolled graph grows and compile time with it); 3x3 to 9x9 are covered.
MAX_SHIFTED_TAPS = 81


def gpu_visible():
    """True when TensorFlow sees a GPU (where XLA and TensorFlow have fast grouped convolutions)."""
    return bool(tf.config.list_logical_devices("GPU"))


def in_xla_cpu_context():
    """True while tracing inside ``tf.function(jit_compile=True)`` with no GPU visible.

    Returns:
        bool. Keras' ``compile(jit_compile=True)`` and ``tf.function(...,
        jit_compile=True)`` both count, nested functions included.
    """
    if tf.executing_eagerly():
        return False
    return _graph_or_outer_in_xla(tf.compat.v1.get_default_graph()) and not gpu_visible()


def _graph_or_outer_in_xla(graph):
    """Whether ``graph``, or a graph it is traced inside, is compiled by XLA.

    A ``tf.function(jit_compile=True)`` traces into a graph whose control
    flow context is an XLA context; nested functions trace into inner
    graphs (``outer_graph`` leads out). TensorFlow has no public API for
    this: the check reads each graph's control flow context (the same walk
    tf_keras makes) rather than import TensorFlow's private
    ``control_flow_util`` module.
    """
    while graph is not None:
        context = graph._get_control_flow_context()  # noqa: SLF001 (no public accessor)
        while context is not None:
            if context.IsXLAContext():
                return True
            context = context.outer_context
        graph = getattr(graph, "outer_graph", None)
    return False


def _same_pads(size, kernel, stride):
    """``(before, after)`` of TensorFlow's "same" padding along one axis (``size`` may be a tensor)."""
    out = -(-size // stride)
    total = tf.maximum((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _padded_input(x, kernel_size, strides, padding):
    """``(x zero-padded for padding, (height, width) before padding, (out_height, out_width))``.

    Sizes are Python ints where the input shape is static, scalar tensors otherwise.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    (kh, kw), (sh, sw) = kernel_size, strides
    shape = tf.shape(x)
    height = x.shape[1] if x.shape[1] is not None else shape[1]
    width = x.shape[2] if x.shape[2] is not None else shape[2]
    if padding == "valid":
        return x, (height, width), ((height - kh) // sh + 1, (width - kw) // sw + 1)
    top, bottom, out_h = _same_pads(height, kh, sh)
    left, right, out_w = _same_pads(width, kw, sw)
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]), (height, width), (out_h, out_w)


def depthwise_conv2d_shifted(x, kernel, strides=(1, 1), padding="same"):
    """Depthwise 2D cross-correlation as a sum of shifted, strided products.

    Equals ``tf.nn.depthwise_conv2d(x, kernel, strides, padding)`` (``"same"``
    with TensorFlow's bottom/right-heavy split; output channel ``c * M + m``
    for channel multiplier ``M``) up to float summation order.

    Args:
        x: ``(batch, height, width, channels)`` tensor, channels last.
        kernel: ``(kh, kw, channels, multiplier)`` tensor, or
            ``(kh, kw, channels)`` for multiplier 1.
        strides: pair of ints.
        padding: ``"same"`` or ``"valid"``.

    Returns:
        ``(batch, out_height, out_width, channels * multiplier)`` tensor.

    Example:
    >>> x = tf.random.normal((1, 8, 8, 4)); w = tf.random.normal((3, 3, 4, 1))
    >>> y = depthwise_conv2d_shifted(x, w)
    >>> float(tf.reduce_max(tf.abs(y - tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME")))) < 1e-5
    True
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    multiplier = int(kernel.shape[3]) if kernel.shape.rank == 4 else 1
    if multiplier == 1 and kernel.shape.rank == 4:
        kernel = kernel[..., 0]
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    sh, sw = strides
    x, (height, width), (out_h, out_w) = _padded_input(x, (kh, kw), (sh, sw), padding)
    kernel = tf.cast(kernel, x.dtype)
    total = None
    for i in range(kh):
        for j in range(kw):
            window = x[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :]
            term = window * kernel[i, j] if multiplier == 1 else window[..., None] * kernel[i, j]
            total = term if total is None else total + term
    if multiplier == 1:
        return total
    shape = tf.shape(total)
    return tf.reshape(total, tf.concat([shape[:3], [shape[3] * multiplier]], 0))


def _tiles(first, last, step):
    """``[(start, length), ...]`` covering ``first..last`` (inclusive) in pieces of at most ``step``."""
    return [(start, min(step, last + 1 - start)) for start in range(first, last + 1, step)]


def _piece_shape(kh, kw, max_taps):
    """``(rows, columns)`` of the pieces that cut a ``kh x kw`` kernel into the fewest pieces of <= ``max_taps`` taps.

    Ties go to the wider piece (longer contiguous rows). 31x31 with 25 taps:
    3x8 pieces, 44 of them (one-row bands would take 62; each piece costs a
    pass over the input and, in int8, a re-quantizing ADD).
    """
    best = None
    for w in range(min(kw, max_taps), 0, -1):
        h = min(kh, max_taps // w)
        count = -(-kh // h) * -(-kw // w)
        if best is None or count < best[0]:
            best = (count, h, w)
    return best[1], best[2]


def depthwise_tile_count(kernel_size, max_taps=25):
    """Number of pieces ``depthwise_conv2d_tiled`` cuts a ``(kh, kw)`` kernel into (before padding-only taps are left out).

    Example:
    >>> depthwise_tile_count((7, 7)), depthwise_tile_count((31, 31))
    (3, 44)
    """
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    band_h, band_w = _piece_shape(kh, kw, max_taps)
    return -(-kh // band_h) * -(-kw // band_w)


def _reached_taps(size, kernel, stride):
    """``(first, last)`` kernel taps that reach the input under "same" padding along one axis.

    With a static ``size``, taps that only ever meet the zero padding (a
    kernel larger than a small input) are left out: exact, and a piece that
    sees nothing but padding would give an all-zero tensor whose int8 range
    is empty (XNNPACK then refuses the file).
    """
    if not isinstance(size, int):
        return 0, kernel - 1
    out = -(-size // stride)
    before = max((out - 1) * stride + kernel - size, 0) // 2
    return max(0, before - stride * (out - 1)), min(kernel - 1, before + size - 1)


def depthwise_conv2d_tiled(x, kernel, strides=(1, 1), padding="same", max_taps=25, tap_weights=None):
    """Depthwise 2D cross-correlation as a sum of depthwise convolutions of at most ``max_taps`` taps.

    Equals ``tf.nn.depthwise_conv2d(x, kernel, strides, padding)`` up to float
    summation order. The kernel is cut into the fewest equal rectangular
    pieces of at most ``max_taps`` taps (edge pieces smaller); each piece is
    a ``"VALID"`` depthwise convolution of the (once padded) input window it
    sees, and the pieces are added; kernel rows and columns that never reach
    a (static) input are left out. For TFLite export: XNNPACK runs depthwise kernels of up
    to 25 taps in one pass and larger ones through a much slower multipass
    kernel, so a 7x7 kernel written as bands of 3 + 3 + 1 rows runs several
    times faster (measurements on the documentation's benchmarks page).

    Args:
        x: ``(batch, height, width, channels)`` tensor, channels last.
        kernel: ``(kh, kw, channels, multiplier)`` tensor.
        strides: pair of ints.
        padding: ``"same"`` or ``"valid"``.
        max_taps: int >= 1, the most taps of one piece.
        tap_weights: None, or a ``(kh, kw)`` array of tap magnitudes (e.g.
            ``abs(kernel).sum((2, 3))``, computed from the kernel's value):
            the pieces are then added in ascending order of their summed
            magnitude. In an int8 file each ADD re-quantizes the running sum
            to its own range, so small pieces first keep the early steps
            fine: one 28x28x64 31x31 layer whose kernel decays as a Gaussian
            (sigma 0.25 of the half-width) measured 31.0 dB SNR against
            float instead of 27.7 in raster order (whole: 34.7; a flat random
            kernel: 25.4 vs 25.1). Float results do not depend on the order
            beyond rounding.

    Returns:
        ``(batch, out_height, out_width, channels * multiplier)`` tensor.

    Raises:
        ValueError: for a bad ``padding``, ``max_taps`` or ``tap_weights``.

    Example:
    >>> x = tf.random.normal((1, 16, 16, 4)); w = tf.random.normal((7, 7, 4, 1))
    >>> y = depthwise_conv2d_tiled(x, w)
    >>> float(tf.reduce_max(tf.abs(y - tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME")))) < 1e-4
    True
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    if isinstance(max_taps, bool) or not isinstance(max_taps, int) or max_taps < 1:
        raise ValueError(f"`max_taps` must be an int >= 1. Received: max_taps={max_taps!r}")
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    if tap_weights is not None:
        tap_weights = np.asarray(tap_weights, dtype="float64")
        if tap_weights.shape != (kh, kw):
            raise ValueError(f"`tap_weights` must have the kernel's (height, width) = {(kh, kw)}. "
                             f"Received: shape {tap_weights.shape}")
    sh, sw = strides
    x, (height, width), (out_h, out_w) = _padded_input(x, (kh, kw), (sh, sw), padding)
    kernel = tf.cast(kernel, x.dtype)
    rows, cols = ((0, kh - 1), (0, kw - 1)) if padding == "valid" else (
        _reached_taps(height, kh, sh), _reached_taps(width, kw, sw)
    )
    band_h, band_w = _piece_shape(rows[1] - rows[0] + 1, cols[1] - cols[0] + 1, max_taps)
    pieces = [(r0, h, c0, w) for r0, h in _tiles(rows[0], rows[1], band_h)
              for c0, w in _tiles(cols[0], cols[1], band_w)]
    if tap_weights is not None:
        pieces.sort(key=lambda p: tap_weights[p[0] : p[0] + p[1], p[2] : p[2] + p[3]].sum())
    # Added one by one, so each piece's output can be freed once added (a tree of adds keeps
    # every piece alive at once: the full-size RepLKNet-31B export ran out of 24 GiB with it).
    total = None
    for r0, h, c0, w in pieces:
        window = x[:, r0 : r0 + (out_h - 1) * sh + h, c0 : c0 + (out_w - 1) * sw + w, :]
        piece = tf.nn.depthwise_conv2d(window, kernel[r0 : r0 + h, c0 : c0 + w], (1, sh, sw, 1), "VALID")
        total = piece if total is None else total + piece
    return total


#: Depthwise kernels with more taps than this get ``depthwise_filter_gradient`` in training steps
#: (``depthwise_conv2d_trainable``): TensorFlow's ``DepthwiseConv2dNativeBackpropFilter`` is faster for 3x3 and
#: 2-40x slower from 5x5 up (7x7: 2-4x, 31x31: 40x; the documentation's benchmarks page).
FAST_FILTER_GRADIENT_MIN_TAPS = 10


def fast_filter_gradient_applies(kernel_size, strides=(1, 1), dilation_rate=(1, 1), multiplier=1):
    """Whether ``depthwise_conv2d_trainable`` computes the filter gradient as one depthwise convolution.

    Args:
        kernel_size: ``(kh, kw)``.
        strides: pair of ints (the fast gradient covers stride 1).
        dilation_rate: pair of ints (it covers dilation 1).
        multiplier: the depth multiplier (it covers 1).

    Returns:
        bool: True for stride 1, dilation 1, multiplier 1 and more than
        ``FAST_FILTER_GRADIENT_MIN_TAPS`` taps, outside XLA on CPU.
    """
    kh, kw = (int(k) for k in kernel_size)
    return (
        tuple(int(s) for s in strides) == (1, 1)
        and tuple(int(d) for d in dilation_rate) == (1, 1)
        and int(multiplier) == 1
        and kh * kw >= FAST_FILTER_GRADIENT_MIN_TAPS
        and not in_xla_cpu_context()
    )


def _stride1_pads(kernel, padding):
    """``(before, after)`` zero padding of a stride-1 convolution along one axis (TensorFlow's "same" split)."""
    if padding == "valid":
        return 0, 0
    return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2


def depthwise_filter_gradient(x, grad, kernel_size, padding="same"):
    """Gradient of a stride-1 depthwise convolution with respect to its ``(kh, kw, C, 1)`` kernel.

    ``dK[i, j, c] = sum_{b, h, w} x_padded[b, h + i, w + j, c] * grad[b, h, w, c]``
    is itself a depthwise convolution: the padded input with batch and
    channels side by side (``(1, H + kh - 1, W + kw - 1, B * C)``) correlated
    with ``grad`` as the kernel (``(H, W, B * C, 1)``, "VALID"), summed over
    the batch. TensorFlow's depthwise forward kernel runs it 2-40x faster than
    ``DepthwiseConv2dNativeBackpropFilter`` for kernels from 5x5 up.

    Args:
        x: ``(batch, height, width, channels)`` input of the convolution.
        grad: ``(batch, height, width, channels)`` gradient of its output.
        kernel_size: ``(kh, kw)``.
        padding: ``"same"`` or ``"valid"``.

    Returns:
        ``(kh, kw, channels, 1)`` tensor of ``x``'s dtype.

    Example:
    >>> x = tf.random.normal((2, 8, 8, 4)); dy = tf.random.normal((2, 8, 8, 4))
    >>> dk = depthwise_filter_gradient(x, dy, (5, 5))
    >>> ref = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(input=x, filter_sizes=[5, 5, 4, 1],
    ...     out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")
    >>> float(tf.reduce_max(tf.abs(dk - ref))) < 1e-4
    True
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    kh, kw = (int(k) for k in kernel_size)
    top, bottom = _stride1_pads(kh, padding)
    left, right = _stride1_pads(kw, padding)
    x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    shape, grad_shape = tf.shape(x), tf.shape(grad)
    batch, channels = shape[0], shape[3]
    side_by_side = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), tf.stack([1, shape[1], shape[2], batch * channels]))
    kernel = tf.reshape(tf.transpose(grad, [1, 2, 0, 3]),
                        tf.stack([grad_shape[1], grad_shape[2], batch * channels, 1]))
    out = tf.raw_ops.DepthwiseConv2dNative(input=side_by_side, filter=kernel, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.reshape(out, tf.stack([kh, kw, batch, channels]))
    return tf.reduce_sum(out, axis=2)[..., None]


def depthwise_conv2d_trainable(x, kernel, padding="same"):
    """``tf.nn.depthwise_conv2d`` (stride 1, multiplier 1) whose kernel gradient is ``depthwise_filter_gradient``.

    The forward pass and the input gradient are TensorFlow's own ops; only
    the kernel's gradient changes (equal up to float summation order). The
    layers use it in training steps where ``fast_filter_gradient_applies``;
    inference and exported graphs keep ``tf.nn.depthwise_conv2d``.

    Args:
        x: ``(batch, height, width, channels)`` tensor.
        kernel: ``(kh, kw, channels, 1)`` tensor (cast to ``x``'s dtype).
        padding: ``"same"`` or ``"valid"``.

    Returns:
        ``(batch, out_height, out_width, channels)`` tensor.

    Example:
    >>> x = tf.random.normal((2, 8, 8, 4)); w = tf.Variable(tf.random.normal((7, 7, 4, 1)))
    >>> with tf.GradientTape() as tape:
    ...     y = depthwise_conv2d_trainable(x, w)
    >>> tape.gradient(y, w).shape
    TensorShape([7, 7, 4, 1])
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    kernel = tf.cast(kernel, x.dtype)
    kernel_size = (int(kernel.shape[0]), int(kernel.shape[1]))
    tf_padding = padding.upper()
    strides = [1, 1, 1, 1]

    @tf.custom_gradient
    def conv(inputs, weights):
        def grad(upstream):
            d_inputs = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(inputs), filter=weights, out_backprop=upstream, strides=strides,
                padding=tf_padding)
            return d_inputs, depthwise_filter_gradient(inputs, upstream, kernel_size, padding)

        return tf.raw_ops.DepthwiseConv2dNative(input=inputs, filter=weights, strides=strides,
                                                 padding=tf_padding), grad

    return conv(x, kernel)
