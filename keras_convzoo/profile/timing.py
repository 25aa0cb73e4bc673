"""Timing: wall times of calls (alone or in alternating rounds), their statistics, and the result row.

``times_ms`` times one call; ``interleaved_times`` times several in
alternating rounds so that a slow spell of the machine falls on all alike;
``result_row`` turns the times into a ``BenchmarkResult`` (median,
interquartile range, minimum). The argument checkers here are shared by
``benchmark``, ``compare`` and ``benchmark_training``.
"""

import dataclasses
import time
from typing import Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """One (model, mode, batch size) measurement.

    Attributes:
        model: model name.
        mode: one of ``MODES``.
        batch_size: inputs per call.
        input_shape: one input's shape, without batch.
        median_ms: median wall time of one call in milliseconds (None when
            the mode failed).
        iqr_ms: interquartile range of the call times (75th minus 25th
            percentile), milliseconds.
        min_ms: fastest call, milliseconds.
        repeats: timed calls.
        macs: multiply-accumulates of one input (``count_flops``), or None.
        error: why the mode could not run (None when it ran).
        note: how the time was taken when it differs from one batched call
            (a TFLite file that could not be resized runs sample by sample).
    """

    model: str
    mode: str
    batch_size: int
    input_shape: Tuple[int, ...]
    median_ms: Optional[float]
    iqr_ms: Optional[float]
    min_ms: Optional[float]
    repeats: int
    macs: Optional[int] = None
    error: Optional[str] = None
    note: Optional[str] = None

    @property
    def ok(self):
        """True when the mode ran."""
        return self.error is None

    @property
    def images_per_s(self):
        """Throughput: ``batch_size`` inputs per median call."""
        return None if not self.ok else 1e3 * self.batch_size / self.median_ms

    def to_dict(self):
        """The fields and ``images_per_s`` as a flat dict (CSV row)."""
        row = dataclasses.asdict(self)
        row["input_shape"] = "x".join(str(d) for d in self.input_shape)
        row["images_per_s"] = self.images_per_s
        return row


# -------------------------------------------------------------- arguments
def check_positive_int(name, value, minimum=1):
    """``value`` as an int, checked to be an int (not a bool) >= ``minimum``.

    Args:
        name: the argument's name, for the error message.
        value: the value to check.
        minimum: the smallest accepted value.

    Returns:
        ``int(value)``.

    Raises:
        ValueError: naming the argument, when ``value`` is not such an int.

    Example:
    >>> check_positive_int("warmup", 0, minimum=0)
    0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        bound = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {bound}. Received: {name}={value!r}")
    return int(value)


def check_rounds(repeats, rounds):
    """``rounds`` checked: a positive int no larger than ``repeats`` (each round times every call).

    Args:
        repeats: the (checked) number of timed calls.
        rounds: alternating rounds.

    Returns:
        ``rounds`` as an int.

    Raises:
        ValueError: for a bad ``rounds``, or ``repeats < rounds``.
    """
    rounds = check_positive_int("rounds", rounds)
    if repeats < rounds:
        raise ValueError(f"`repeats` must be >= `rounds` ({rounds}). Received: repeats={repeats}")
    return rounds


def check_batch_sizes(batch_sizes):
    """``batch_sizes`` checked: a positive int or a non-empty sequence of them.

    Args:
        batch_sizes: an int or a sequence of ints.

    Returns:
        A tuple of distinct ints, in the given order.

    Raises:
        ValueError: naming ``batch_sizes``, for anything else.

    Example:
    >>> check_batch_sizes((8, 1, 8))
    (8, 1)
    """
    if isinstance(batch_sizes, (int, np.integer)) and not isinstance(batch_sizes, bool):
        batch_sizes = (batch_sizes,)
    try:
        sizes = tuple(batch_sizes)
    except TypeError:
        sizes = None
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in sizes):
        raise ValueError(
            f"`batch_sizes` must be a non-empty sequence of positive ints. Received: batch_sizes={batch_sizes!r}"
        )
    return tuple(dict.fromkeys(int(b) for b in sizes))


# ----------------------------------------------------------------- timing
def times_ms(call, warmup=3, repeats=15):
    """Wall times (ms) of ``repeats`` calls of ``call()`` after ``warmup`` untimed ones.

    Args:
        call: a function of no arguments that finishes its work before returning.
        warmup: untimed calls first.
        repeats: timed calls.

    Returns:
        A list of ``repeats`` floats, in call order.

    Example:
    >>> float(np.median(times_ms(lambda: sum(range(1000)), repeats=5))) > 0
    True
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def interleaved_times(calls, warmup=3, repeats=15, rounds=5):
    """Wall times (ms) of several calls measured in alternating rounds.

    Each call is warmed up, then the calls take turns: ``rounds`` rounds,
    each giving every call an equal share of its ``repeats`` timed calls,
    the order rotating by one each round. A slow spell of the machine so
    falls on every call alike, which makes the ratios of their medians
    fair on a shared machine.

    Args:
        calls: a dict ``{label: call}``. A call is a function of no
            arguments that finishes its work before returning (e.g. from
            ``mode_call``), or an object with a ``time_ms(n)`` method that
            runs its work ``n`` times and returns the ``n`` times itself
            (work timed elsewhere, e.g. in another process).
        warmup: untimed calls of each first (>= 0).
        repeats: timed calls of each (>= ``rounds``).
        rounds: alternating rounds (>= 1).

    Returns:
        A dict ``{label: list of repeats floats}``; a call that raised maps
        to its exception and takes no further turns.

    Example:
    >>> times = interleaved_times({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, repeats=6, rounds=3)
    >>> sorted(times), len(times["a"])
    (['a', 'b'], 6)
    """
    if not isinstance(calls, dict) or not all(callable(c) or hasattr(c, "time_ms") for c in calls.values()):
        raise TypeError(
            "`calls` must be a dict of functions of no arguments (or objects with a `time_ms(n)` method). "
            f"Received: {type(calls).__name__}"
        )
    warmup = check_positive_int("warmup", warmup, minimum=0)
    repeats = check_positive_int("repeats", repeats)
    rounds = check_rounds(repeats, rounds)

    def timed(call, n):
        return list(call.time_ms(n)) if hasattr(call, "time_ms") else times_ms(call, 0, n)

    shares = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    result = {label: [] for label in calls}
    live = []
    for label, call in calls.items():
        try:
            if warmup:
                timed(call, warmup)
            live.append(label)
        except Exception as error:
            result[label] = error
    for r, share in enumerate(shares):
        k = r % len(live) if live else 0
        for label in live[k:] + live[:k]:
            if isinstance(result[label], Exception):
                continue
            try:
                result[label] += timed(calls[label], share)
            except Exception as error:
                result[label] = error
    return result


# ------------------------------------------------------------------- rows
def result_row(name, mode, batch, shape, repeats, macs, times=None, error=None, note=None):
    """The ``BenchmarkResult`` of one (model, mode, batch size): statistics of ``times``, or ``error``.

    Args:
        name: model name.
        mode: the mode's name.
        batch: inputs per call.
        shape: one input's shape, without batch.
        repeats: timed calls.
        macs: MACs of one input, or None.
        times: the call times in milliseconds (when the mode ran).
        error: why the mode could not run (then ``times`` is not read).
        note: how the time was taken, when it differs from one batched call.

    Returns:
        A ``BenchmarkResult`` with the median, interquartile range and
        minimum of ``times``, or with ``error`` and no times.

    Example:
    >>> result_row("m", "graph", 1, (8, 8, 3), 3, None, [1.0, 2.0, 4.0]).median_ms
    2.0
    """
    if error is not None:
        return BenchmarkResult(name, mode, batch, shape, None, None, None, repeats, macs, error)
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return BenchmarkResult(name, mode, batch, shape, float(median), float(q75 - q25), float(min(times)), repeats, macs,
                           note=note)


def error_text(error):
    """The ``error`` of a row: the exception's type and the first line of its message.

    Args:
        error: an exception.

    Returns:
        ``"TypeName: first line"``.
    """
    from keras_convzoo.export.converter import first_error_line

    return f"{type(error).__name__}: {first_error_line(error)}"
