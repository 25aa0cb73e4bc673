"""Model complexity and speed: parameters, multiply-accumulates (MACs), latency per execution mode, training step time, roofline."""

from keras_convzoo.profile.benchmark import benchmark, compare  # the function shadows the module's name here
from keras_convzoo.profile.flops import MacCount, count_flops, fft_macs, format_macs
from keras_convzoo.profile.modes import MODES, mode_call
from keras_convzoo.profile.output import format_table, write_csv
from keras_convzoo.profile.params import count_params
from keras_convzoo.profile.roofline import MachinePeaks, RooflinePoint, measure_peaks, roofline_point
from keras_convzoo.profile.timing import BenchmarkResult, interleaved_times
from keras_convzoo.profile.training import benchmark_training, onednn_enabled, training_step_call

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
    "onednn_enabled",
]
