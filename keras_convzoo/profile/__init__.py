"""Model complexity and speed: parameters, multiply-accumulates (MACs), latency per execution mode, training step time, roofline."""

from keras_convzoo.profile.benchmark import (
    MODES,
    BenchmarkResult,
    benchmark,
    compare,
    format_table,
    interleaved_times,
    mode_call,
    write_csv,
)
from keras_convzoo.profile.flops import MacCount, count_flops, fft_macs, format_macs
from keras_convzoo.profile.params import count_params
from keras_convzoo.profile.roofline import MachinePeaks, RooflinePoint, measure_peaks, roofline_point
from keras_convzoo.profile.training import benchmark_training, training_step_call

__all__ = [
    "count_params",
    "count_flops",
    "MacCount",
    "fft_macs",
    "format_macs",
    "benchmark",
    "compare",
    "interleaved_times",
    "mode_call",
    "BenchmarkResult",
    "MODES",
    "format_table",
    "write_csv",
    "MachinePeaks",
    "RooflinePoint",
    "measure_peaks",
    "roofline_point",
    "benchmark_training",
    "training_step_call",
]
