"""Timing helper shared by the tools/ benchmarks."""

import time

import numpy as np


def median_ms(fn, x, warmup=3, repeats=15):
    """Median wall time of ``fn(x)`` in milliseconds, after ``warmup`` calls.

    The first output (or the output) is brought to the host with ``.numpy()``
    so asynchronous execution is included.
    """
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        (out[0] if isinstance(out, (list, tuple)) else out).numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))
