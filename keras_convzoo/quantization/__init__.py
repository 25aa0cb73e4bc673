"""Quantization-aware training (tensorflow-model-optimization, under tf_keras).

``quantize_aware(model)`` wraps a model for QAT with int8 QuantizeConfigs for
every layer of the package; after fine-tuning,
``export.to_tflite(qat_model, path, quantization="int8")`` writes a
full-integer file that matches the QAT model (``QAT_INT8_MIN_SNR_DB``).

tensorflow-model-optimization accepts only tf_keras models, so QAT runs with
``TF_USE_LEGACY_KERAS=1`` (DESIGN principle 2); under Keras 3 the functions
raise a ``RuntimeError`` with that command. tfmot is imported only when a
function runs (``pip install keras_convzoo[qat]``).

Example:
>>> # TF_USE_LEGACY_KERAS=1 python qat.py
>>> import keras_convzoo as kcz
>>> model = kcz.create_model("resnext50_32x4d", input_shape=(224, 224, 3))
>>> qat = kcz.quantization.quantize_aware(model)
>>> qat.compile("adam", "sparse_categorical_crossentropy"); qat.fit(ds, epochs=1)
>>> kcz.export.to_tflite(qat, "resnext50_int8.tflite", quantization="int8")
"""

from keras_convzoo.quantization.qat import (
    QAT_INT8_MIN_SNR_DB,
    quantize_aware,
    quantize_scope,
    calibrate_ranges,
    unsupported_layers,
)

__all__ = [
    "quantize_aware",
    "calibrate_ranges",
    "quantize_scope",
    "unsupported_layers",
    "QAT_INT8_MIN_SNR_DB",
]
