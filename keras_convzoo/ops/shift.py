"""The zero-FLOP, zero-parameter spatial shift of Wu et al. (2018), as pad + slice.

Channel-to-direction assignment (used by ``shift2d`` and ``layers.ShiftConv2D``):

With ``C`` channels (``C >= 8``) and ``g = max(1, C // 9)``, the channels are
cut into nine contiguous groups. Groups 0..7 hold ``g`` channels each and are
shifted; group 8, the remaining ``C - 8 * g`` channels (``g + C % 9`` of them
when ``C >= 9``, none when ``C == 8``), is left in place. Group ``k`` of the
shifted ones reads its value from the neighbour at offset ``(dy, dx) =
SHIFT_OFFSETS[k]``::

    k:        0         1        2        3        4        5        6        7
    (dy,dx): (-1,-1)  (-1, 0)  (-1, 1)  ( 0,-1)  ( 0, 1)  ( 1,-1)  ( 1, 0)  ( 1, 1)

    out[b, y, x, c] = in[b, y + dy, x + dx, c]   (0 outside the image)

i.e. the eight neighbours of the 3x3 window in row-major order, centre
skipped. The shift of group ``k`` equals a depthwise 3x3 cross-correlation
with "same" zero padding whose kernel is one-hot at ``(dy + 1, dx + 1)``:
the content of the group moves by ``(-dy, -dx)`` pixels. For ``C`` divisible
by 9 this is the paper's even split into nine shift groups; otherwise the
remainder goes to the unshifted group, as in the paper.
"""

from keras_convzoo.backend import tf

#: ``(dy, dx)`` source offsets of the eight shifted channel groups, in order.
SHIFT_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))

#: Smallest channel count ``shift2d`` accepts (one channel per direction).
MIN_SHIFT_CHANNELS = 8


def shift_groups(channels):
    """Returns the channel-to-direction assignment of ``shift2d``.

    Args:
        channels: int >= 8, the number of channels.

    Returns:
        A tuple of nine ``(start, stop, dy, dx)`` tuples: channels
        ``start:stop`` read from offset ``(dy, dx)``; the last one is the
        unshifted group ``(8 * g, channels, 0, 0)`` (empty when
        ``channels == 8``).

    Example:
    >>> shift_groups(20)[:2]
    ((0, 2, -1, -1), (2, 4, -1, 0))
    >>> shift_groups(20)[-1]
    (16, 20, 0, 0)
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < MIN_SHIFT_CHANNELS:
        raise ValueError(
            f"The shift needs an int channel count >= {MIN_SHIFT_CHANNELS} (one channel per "
            f"shift direction). Received: channels={channels!r}"
        )
    g = max(1, channels // 9)
    groups = tuple((k * g, (k + 1) * g, dy, dx) for k, (dy, dx) in enumerate(SHIFT_OFFSETS))
    return groups + ((8 * g, channels, 0, 0),)


def _window(offset):
    # Slice of the padded axis that reads from ``index + offset`` of the original.
    start = 1 + offset
    stop = offset - 1 if offset < 1 else None
    return slice(start, stop)


def shift2d(x):
    """Shifts the channel groups of a channels-last 4D tensor by one pixel.

    Zero FLOPs and zero parameters: one ``tf.pad`` by one pixel, one strided
    slice per channel group and one concatenation (TFLite PAD /
    STRIDED_SLICE / CONCATENATION, ONNX Pad / Slice / Concat), no
    convolution. Works with ``None`` batch and spatial sizes. The assignment
    of channels to directions is the module docstring's (``shift_groups``).

    Args:
        x: tensor ``(batch, height, width, channels)`` with static
            ``channels >= 8``.

    Returns:
        A tensor of the same shape and dtype.

    Example:
    >>> y = shift2d(tf.ones((1, 4, 4, 9)))
    >>> float(y[0, 0, 0, 0]), float(y[0, 1, 1, 0])  # group (-1, -1) at the border
    (0.0, 1.0)
    """
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4 or x.shape[-1] is None:
        raise ValueError(
            "shift2d expects a 4D channels-last tensor with a known channel count. "
            f"Received: shape={x.shape}"
        )
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    parts = []
    for start, stop, dy, dx in shift_groups(int(x.shape[-1])):
        if stop > start:
            parts.append(padded[:, _window(dy), _window(dx), start:stop])
    return tf.concat(parts, axis=-1)
