"""Verified export of Keras models to TensorFlow Lite, ONNX and SavedModel.

Each exporter writes the file, runs it with the deployment runtime (the
LiteRT interpreter for TFLite, onnxruntime for ONNX, TensorFlow for a
reloaded SavedModel) on the user's ``verification_data``, else the int8
calibration data, else synthetic images in the model's own input range
(``export.inputs``), compares the outputs with the Keras model and returns
an ``ExportReport``;
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

from keras_convzoo.export.lowering import DEPTHWISE_MAX_TAPS, deployment_lowering
from keras_convzoo.export.onnx import onnx_session, run_onnx, to_onnx
from keras_convzoo.export.report import (
    DYNAMIC_MIN_SNR_DB,
    FLOAT16_MIN_SNR_DB,
    FP32_MAX_RELATIVE_DIFF,
    INT8_MIN_SNR_DB,
    MIN_AGREEMENT_SAMPLES,
    MIN_TOP1_AGREEMENT,
    ONNX_MAX_RELATIVE_DIFF,
    QAT_INT8_MIN_SNR_DB,
    QUANTIZATIONS,
    ExportError,
    Check,
    ExportReport,
    VerificationError,
    compare_outputs,
    check_report,
    tolerance_for,
)
from keras_convzoo.export.converter import converter_logs
from keras_convzoo.export.verification import rejected_path
from keras_convzoo.input_shapes import DEFAULT_SPATIAL_SIZE
from keras_convzoo.export.inputs import (
    DEFAULT_NUM_SAMPLES,
    InputRange,
    input_range,
    smooth_images,
    synthetic_inputs,
)
from keras_convzoo.export.prepare import float32_form, keras_quantized_layers, prepare_for_export
from keras_convzoo.export.saved_model import run_saved_model, to_saved_model
from keras_convzoo.export.tflite import float_ops, is_quantization_aware, run_tflite, tflite_interpreter, to_tflite

__all__ = [
    "to_tflite",
    "to_onnx",
    "onnx_session",
    "tflite_interpreter",
    "to_saved_model",
    "run_tflite",
    "run_onnx",
    "run_saved_model",
    "float_ops",
    "is_quantization_aware",
    "deployment_lowering",
    "prepare_for_export",
    "float32_form",
    "keras_quantized_layers",
    "DEPTHWISE_MAX_TAPS",
    "ExportReport",
    "ExportError",
    "VerificationError",
    "compare_outputs",
    "check_report",
    "rejected_path",
    "converter_logs",
    "QUANTIZATIONS",
    "DEFAULT_SPATIAL_SIZE",
    "FP32_MAX_RELATIVE_DIFF",
    "FLOAT16_MIN_SNR_DB",
    "MIN_TOP1_AGREEMENT",
    "MIN_AGREEMENT_SAMPLES",
    "DEFAULT_NUM_SAMPLES",
    "Check",
    "tolerance_for",
    "InputRange",
    "input_range",
    "smooth_images",
    "synthetic_inputs",
    "DYNAMIC_MIN_SNR_DB",
    "INT8_MIN_SNR_DB",
    "QAT_INT8_MIN_SNR_DB",
    "ONNX_MAX_RELATIVE_DIFF",
]
