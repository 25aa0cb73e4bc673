"""Depthwise 2D convolution as a sum of shifted products, the fast form under XLA on CPU.

XLA's CPU backend has no fast kernel for grouped convolutions: a depthwise
``tf.nn.depthwise_conv2d`` compiled with ``jit_compile=True`` runs through a
naive loop emitter. Measured on the 2-core CPU dev machine (TF 2.21, batch 1,
median ms): 7x7 on 56x56x96 graph 1.9 / XLA 40 / XLA shifted sum 2.4; 7x7 on
14x14x384 1.2 / 18.7 / 0.9; 3x3 on 112x112x32 2.0 / 25.8 / 1.5; 3x3 on
56x56x144 0.9 / 18.5 / 0.8. The same cross-correlation written as
``sum_{i,j} x[i::s, j::s] * w[i, j]`` is one elementwise loop that XLA fuses
and vectorises, so it is as fast as TensorFlow's own depthwise kernel
outside XLA. Outside XLA the shifted sum is slower (k*k separate ops), so
``layers.DepthwiseConv2D`` uses it only inside an XLA compilation on CPU.
"""

from tensorflow.python.ops import control_flow_util

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
    in_xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
    return bool(in_xla) and not gpu_visible()


def _same_pads(size, kernel, stride):
    """``(before, after)`` of TensorFlow's "same" padding along one axis (``size`` may be a tensor)."""
    out = -(-size // stride)
    total = tf.maximum((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


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
    shape = tf.shape(x)
    height = x.shape[1] if x.shape[1] is not None else shape[1]
    width = x.shape[2] if x.shape[2] is not None else shape[2]
    if padding == "same":
        top, bottom, out_h = _same_pads(height, kh, sh)
        left, right, out_w = _same_pads(width, kw, sw)
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    else:
        out_h = (height - kh) // sh + 1
        out_w = (width - kw) // sw + 1
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
