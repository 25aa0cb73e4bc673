"""Channel rounding used by MobileNet-style width multipliers and SE blocks."""


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Rounds ``value`` to the nearest multiple of ``divisor``.

    This is the rule of the MobileNet papers, used by keras.applications
    (``round_limit=0.9``) and by timm (SE reduction uses ``round_limit=0``).
    The result never drops below ``min_value`` (default: ``divisor``) nor
    below ``round_limit * value``.

    Args:
        value: the channel count to round (int or float).
        divisor: the multiple to round to, a positive int.
        min_value: lower bound for the result; defaults to ``divisor``.
        round_limit: if rounding lowered the value below
            ``round_limit * value``, one more ``divisor`` is added.

    Returns:
        An int.

    Example:
    >>> make_divisible(32 * 0.35)
    16
    >>> make_divisible(64 / 16, 8, round_limit=0.0)
    8
    """
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ValueError(f"`divisor` must be a positive int. Received: divisor={divisor!r}")
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return int(new_value)


def se_channels(channels, ratio=1 / 16, divisor=8, round_limit=0.0):
    """Channels of the squeeze (bottleneck) layer of a squeeze-excite block.

    Follows timm's SE rule: ``make_divisible(channels * ratio, divisor,
    round_limit=0)``; with ``divisor=None`` it is ``max(1, int(channels *
    ratio))`` (the SENet paper's plain reduction).

    Args:
        channels: int, channels of the excited tensor.
        ratio: float in (0, 1], the reduction ratio (1/16 in SENet).
        divisor: int or None, rounding multiple.
        round_limit: see ``make_divisible``.

    Returns:
        An int.

    Example:
    >>> se_channels(64)   # SE-ResNet18's first stage (timm)
    8
    >>> se_channels(256, divisor=None)
    16
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"`ratio` must be a float in (0, 1]. Received: ratio={ratio!r}")
    if divisor is None:
        return max(1, int(channels * ratio))
    return make_divisible(channels * ratio, divisor, round_limit=round_limit)
