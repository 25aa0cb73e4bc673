"""Explicit padding amounts for strided convolutions and pooling.

Two conventions exist for strided ``k x k`` windows:

- ``"torch"``: symmetric ``(k - 1) // 2 * dilation`` on every side, as PyTorch,
  timm and torchvision models (and keras.applications' ResNets) do.
- ``"keras"``: keras.applications' ``correct_pad`` rule for MobileNets, which
  equals TensorFlow's ``"same"`` padding when the size is known, and assumes
  an even size (pads bottom/right only) when the height is ``None``.
- ``"same"``: TensorFlow's own ``padding="same"`` on the convolution (no
  padding layer; bottom/right gets the extra row for even sizes, decided at
  run time).
"""

PADDING_MODES = ("torch", "keras", "same")


def same_padding_amounts(kernel_size, spatial_shape=None, mode="torch", dilation=1):
    """Returns ``((top, bottom), (left, right))`` padding for a strided window.

    Args:
        kernel_size: int, the window size (square).
        spatial_shape: ``(height, width)`` of the input, entries may be
            ``None``; used by ``mode="keras"`` only.
        mode: ``"torch"`` (symmetric) or ``"keras"`` (correct_pad); ``"same"``
            needs no explicit padding and is rejected here.
        dilation: int, dilation rate of the window (``"torch"`` only).

    Returns:
        A pair of pairs of ints, usable as ``ZeroPadding2D(padding=...)``.

    Example:
    >>> same_padding_amounts(3, (None, None), mode="keras")
    ((0, 1), (0, 1))
    >>> same_padding_amounts(7)
    ((3, 3), (3, 3))
    """
    if mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of {PADDING_MODES}. Received: padding_mode={mode!r}"
        )
    if mode == "same":
        raise ValueError("padding_mode='same' pads inside the convolution; no amounts to compute.")
    if mode == "torch":
        p = (kernel_size - 1) // 2 * dilation
        return ((p, p), (p, p))
    if dilation != 1:
        raise ValueError(
            f"padding_mode='keras' supports dilation=1 only. Received: dilation={dilation}"
        )
    if spatial_shape is None:
        spatial_shape = (None, None)
    correct = kernel_size // 2
    if spatial_shape[0] is None:  # keras.applications looks at the height only
        adjusts = (1, 1)
    else:
        adjusts = tuple(1 if size is None else 1 - int(size) % 2 for size in spatial_shape)
    return tuple((correct - a, correct) for a in adjusts)
