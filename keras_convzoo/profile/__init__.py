"""Model complexity: parameter counts (MACs and latency come with the profiler issue)."""

from keras_convzoo.profile.params import count_params

__all__ = ["count_params"]
