"""Verified export of Keras models to TensorFlow Lite and ONNX.

Each exporter writes the file, runs it with the deployment runtime (the
LiteRT interpreter for TFLite, onnxruntime for ONNX) on seeded random inputs,
compares the outputs with the Keras model and returns an ``ExportReport``;
with ``verify=True`` (the default) a file outside tolerance raises
``VerificationError``. Converter failures raise ``ExportError`` naming the
converter and its first error line, never a silently broken file.

The converters and runtimes (``tf2onnx``, ``onnx``, ``onnxruntime``,
``ai-edge-litert``) are optional dependencies (``pip install
keras_convzoo[export]``), imported only when an export runs.

Example:
>>> import keras_convzoo as kcz
>>> from keras_convzoo import export
>>> model = kcz.create_model("resnext50_32x4d", input_shape=(224, 224, 3))
>>> print(export.to_tflite(model, "resnext50.tflite"))
>>> export.to_tflite(model, "resnext50_fp16.tflite", quantization="float16")
>>> export.to_onnx(model, "resnext50.onnx").relative_diff < 1e-4
True
"""

from keras_convzoo.export.onnx import run_onnx, to_onnx
from keras_convzoo.export.report import (
    DEFAULT_SPATIAL_SIZE,
    DYNAMIC_MAX_RELATIVE_DIFF,
    FLOAT16_MAX_RELATIVE_DIFF,
    FP32_MAX_RELATIVE_DIFF,
    INT8_MIN_SNR_DB,
    ONNX_MAX_RELATIVE_DIFF,
    QUANTIZATIONS,
    ExportError,
    ExportReport,
    VerificationError,
    compare_outputs,
    check_report,
)
from keras_convzoo.export.tflite import run_tflite, to_tflite

__all__ = [
    "to_tflite",
    "to_onnx",
    "run_tflite",
    "run_onnx",
    "ExportReport",
    "ExportError",
    "VerificationError",
    "compare_outputs",
    "check_report",
    "QUANTIZATIONS",
    "DEFAULT_SPATIAL_SIZE",
    "FP32_MAX_RELATIVE_DIFF",
    "FLOAT16_MAX_RELATIVE_DIFF",
    "DYNAMIC_MAX_RELATIVE_DIFF",
    "INT8_MIN_SNR_DB",
    "ONNX_MAX_RELATIVE_DIFF",
]
