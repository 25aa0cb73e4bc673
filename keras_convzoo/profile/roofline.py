"""The machine's ceilings (GEMM peak, memory bandwidth) and where a model's time stands against them.

``measure_peaks`` times, in this process and with the threads the models
get: a large float32 matrix product in TensorFlow graph mode and as a
TFLite file in LiteRT (the faster is the fp32 GEMM peak a convolution can
reach, GMAC/s), the same product as a full-integer TFLite file where the CPU has int8
dot products (AVX-512 VNNI, AVX-VNNI, AMX), and a streaming add of arrays
far larger than the caches (memory bandwidth, GB/s). ``roofline_point`` places
one timed model against them: achieved GMAC/s, the fraction of the peak,
its arithmetic intensity (``MacCount.intensity``, MACs per byte moved) and
the roofline bound ``min(peak, intensity * bandwidth)`` that says whether
the model is compute- or memory-bound on this machine.

Example:
>>> from keras_convzoo import profile
>>> peaks = profile.measure_peaks(num_threads=2)
>>> macs = profile.count_flops(model, input_shape=(224, 224, 3))
>>> profile.roofline_point(macs, median_ms=38.0, peaks=peaks).fraction_of_peak
"""

import dataclasses
import os
import tempfile
from typing import Optional, Tuple

import numpy as np

from keras_convzoo.backend import tf

#: CPU flags (``/proc/cpuinfo``) that give int8 dot products.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags():
    """The CPU's feature flags from ``/proc/cpuinfo`` (an empty tuple where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return tuple(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ()


@dataclasses.dataclass(frozen=True)
class MachinePeaks:
    """What ``measure_peaks`` measured.

    Attributes:
        fp32_gmacs: float32 GEMM peak, GMAC/s: the faster of TensorFlow
            (graph mode) and LiteRT (XNNPACK).
        int8_gmacs: int8 GEMM peak of the LiteRT interpreter, GMAC/s, or
            None where the CPU has no int8 dot products or LiteRT is missing.
        bandwidth_gbs: streaming memory bandwidth, GB/s.
        threads: the threads of the measurement.
        int8_flags: the CPU's int8 dot-product flags (``INT8_DOT_FLAGS``).
    """

    fp32_gmacs: float
    int8_gmacs: Optional[float]
    bandwidth_gbs: float
    threads: int
    int8_flags: Tuple[str, ...] = ()

    def __str__(self):
        int8 = f"{self.int8_gmacs:.0f} GMAC/s ({', '.join(self.int8_flags)})" if self.int8_gmacs else "-"
        return (f"fp32 GEMM peak {self.fp32_gmacs:.0f} GMAC/s, int8 GEMM peak {int8}, "
                f"memory bandwidth {self.bandwidth_gbs:.1f} GB/s, {self.threads} threads")


def _median_ms(call, repeats):
    import time

    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def fp32_gemm_gmacs(size=2048, repeats=10):
    """float32 ``size x size`` matrix product in TensorFlow graph mode: GMAC/s (median of ``repeats``)."""
    _check_positive("size", size)
    _check_positive("repeats", repeats)
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((size, size)).astype("float32"))
    b = tf.constant(rng.standard_normal((size, size)).astype("float32"))
    product = tf.function(lambda x, y: tf.matmul(x, y))
    ms = _median_ms(lambda: product(a, b).numpy(), repeats)
    return size**3 / ms / 1e6


def litert_gemm_gmacs(rows=256, size=2048, repeats=10, num_threads=None, int8=False):
    """A TFLite ``Dense(size)`` on ``rows x size`` inputs in LiteRT (XNNPACK): GMAC/s, or None without LiteRT.

    Args:
        rows: rows of the input (the batch of the timed call).
        size: input and output width.
        repeats: timed calls (median).
        num_threads: interpreter threads.
        int8: a full-integer file (calibrated on two random batches)
            instead of float32.

    Returns:
        GMAC/s, or None when ai-edge-litert is not installed.
    """
    _check_positive("rows", rows)
    _check_positive("size", size)
    _check_positive("repeats", repeats)
    try:
        from keras_convzoo.export import tflite_interpreter, to_tflite
        from keras_convzoo.backend import keras

        inputs = keras.Input((size,), batch_size=rows)
        model = keras.Model(inputs, keras.layers.Dense(size, use_bias=False)(inputs))
        rng = np.random.default_rng(0)
        samples = [rng.standard_normal((rows, size)).astype("float32") for _ in range(2)]
        options = dict(quantization="int8", representative_data=samples) if int8 else {}
        with tempfile.TemporaryDirectory(prefix="convzoo_roofline_") as folder:
            path = os.path.join(folder, "gemm.tflite")
            to_tflite(model, path, verify=False, **options)
            interpreter = tflite_interpreter(path, num_threads=num_threads)
    except ImportError:
        return None
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [rows, size], strict=False)  # the file is written at batch 1
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], samples[0].astype(detail["dtype"]))
    ms = _median_ms(interpreter.invoke, repeats)
    return rows * size * size / ms / 1e6


def bandwidth_gbs(megabytes=256, repeats=10):
    """Streaming ``c = a + b`` over float32 arrays of ``megabytes`` each in graph mode: GB/s (3 arrays moved)."""
    _check_positive("megabytes", megabytes)
    _check_positive("repeats", repeats)
    n = megabytes * (1 << 20) // 4
    a = tf.constant(np.ones(n, dtype="float32"))
    b = tf.constant(np.full(n, 2.0, dtype="float32"))
    add = tf.function(lambda x, y: x + y)
    ms = _median_ms(lambda: add(a, b), repeats)  # reads a and b, writes the sum
    return 3 * n * 4 / ms / 1e6


def measure_peaks(num_threads=None, repeats=10):
    """Measures the machine's ceilings in this process.

    Args:
        num_threads: LiteRT threads of the int8 measurement (TensorFlow
            uses its intra-op threads); default: ``default_threads()``.
        repeats: timed repetitions of each measurement (median).

    Returns:
        A ``MachinePeaks``.

    Example:
    >>> print(measure_peaks())
    fp32 GEMM peak 147 GMAC/s, int8 GEMM peak ...
    """
    from keras_convzoo.profile.modes import default_threads

    threads = default_threads() if num_threads is None else num_threads
    _check_positive("num_threads", threads)
    flags = tuple(f for f in INT8_DOT_FLAGS if f in cpu_flags())
    litert_fp32 = litert_gemm_gmacs(repeats=repeats, num_threads=threads)
    return MachinePeaks(
        fp32_gmacs=max(fp32_gemm_gmacs(repeats=repeats), litert_fp32 or 0.0),
        int8_gmacs=litert_gemm_gmacs(repeats=repeats, num_threads=threads, int8=True) if flags else None,
        bandwidth_gbs=bandwidth_gbs(repeats=repeats),
        threads=threads,
        int8_flags=flags,
    )


@dataclasses.dataclass(frozen=True)
class RooflinePoint:
    """One timed model against the machine's ceilings.

    Attributes:
        achieved_gmacs: MACs per second of the timed run, in GMAC/s.
        peak_gmacs: the GEMM peak it is compared with (fp32, or int8).
        fraction_of_peak: ``achieved_gmacs / peak_gmacs``.
        intensity: MACs per byte moved (``MacCount.intensity``).
        bound_gmacs: ``min(peak_gmacs, intensity * bandwidth)``, the
            roofline's ceiling for this intensity.
        bound: ``"compute"`` or ``"memory"``: which ceiling is lower.
    """

    achieved_gmacs: float
    peak_gmacs: float
    fraction_of_peak: float
    intensity: float
    bound_gmacs: float
    bound: str


def roofline_point(macs, median_ms, peaks, batch_size=1, int8=False):
    """Places a timed model on the machine's roofline.

    Args:
        macs: the model's ``MacCount`` (one sample).
        median_ms: the time of one call on ``batch_size`` samples.
        peaks: ``MachinePeaks`` of the same machine and threads.
        batch_size: samples per timed call.
        int8: compare with the int8 peak (a full-integer file).

    Returns:
        A ``RooflinePoint``.

    Raises:
        ValueError: for a non-positive time or batch, or ``int8=True``
            without an int8 peak.
    """
    if not median_ms or median_ms <= 0:
        raise ValueError(f"`median_ms` must be a positive time. Received: median_ms={median_ms!r}")
    _check_positive("batch_size", batch_size)
    peak = peaks.int8_gmacs if int8 else peaks.fp32_gmacs
    if peak is None:
        raise ValueError("`int8=True` needs an int8 peak; this machine's MachinePeaks has none (no int8 dot "
                         "products or no LiteRT).")
    achieved = macs.total * batch_size / median_ms / 1e6
    # int8 moves a quarter of the float32 bytes
    intensity = macs.intensity * (4 if int8 else 1)
    memory_ceiling = intensity * peaks.bandwidth_gbs
    bound_gmacs = min(peak, memory_ceiling)
    return RooflinePoint(
        achieved_gmacs=achieved,
        peak_gmacs=peak,
        fraction_of_peak=achieved / peak,
        intensity=intensity,
        bound_gmacs=bound_gmacs,
        bound="memory" if memory_ceiling < peak else "compute",
    )
