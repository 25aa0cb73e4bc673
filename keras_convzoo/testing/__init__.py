"""Test helpers for keras_convzoo layers and models (pytest-native)."""

from keras_convzoo.testing.helpers import (
    random_array,
    randomize_batch_norms,
    run_application_test,
    run_layer_test,
    run_model_saving_test,
    run_serialization_test,
    tflite_filter_shapes,
)

__all__ = [
    "random_array",
    "randomize_batch_norms",
    "run_application_test",
    "run_layer_test",
    "run_model_saving_test",
    "run_serialization_test",
    "tflite_filter_shapes",
]
