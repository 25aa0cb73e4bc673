"""Quantization-aware training: configs for every layer, QAT -> full-integer TFLite that matches the QAT model.

tensorflow-model-optimization accepts only tf_keras models, so the QAT tests
need ``TF_USE_LEGACY_KERAS=1``. In the default (Keras 3) run this file checks
the clear error of ``quantize_aware`` and runs its own tf_keras tests in a
subprocess (``test_qat_tests_pass_under_tf_keras``); under tf_keras the QAT
tests run directly and the two Keras 3 tests are skipped.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.backend import LEGACY_KERAS, keras

ROOT = Path(__file__).resolve().parents[2]

legacy_only = pytest.mark.skipif(
    not LEGACY_KERAS,
    reason="tfmot needs tf_keras: run in a TF_USE_LEGACY_KERAS=1 subprocess by "
    "test_qat_tests_pass_under_tf_keras",
)
keras3_only = pytest.mark.skipif(
    LEGACY_KERAS, reason="about the Keras 3 process (its error, the tf_keras subprocess)"
)

SIZE = 32
CLASSES = 10


def _images(n, seed, size=SIZE, channels=3):
    return np.random.default_rng(seed).standard_normal((n, size, size, channels)).astype("float32")


def _tiny(name, randomize_bn="all"):
    """The tiny twin with random BN statistics.

    ``randomize_bn="scale"`` randomizes only gamma and the moving variance, so
    the folded biases stay zero (an int8 file can then equal the QAT model
    exactly); ``"all"`` also beta and the moving mean.
    """
    spec = kcz.get_spec(name)
    keras.utils.set_random_seed(1)
    model = kcz.create_model(
        name, input_shape=(SIZE, SIZE, 3), classes=CLASSES, classifier_activation=None,
        **spec.test_overrides,
    )
    rng = np.random.default_rng(2)
    for layer in model.layers:  # non-trivial folding; no zero-initialised residual branch
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            if randomize_bn == "all":
                beta = rng.normal(0.0, 0.2, beta.shape).astype("float32")
                mean = rng.normal(0.0, 0.2, mean.shape).astype("float32")
            gamma = rng.uniform(0.5, 1.5, gamma.shape).astype("float32")
            variance = rng.uniform(0.5, 1.5, variance.shape).astype("float32")
            layer.set_weights([gamma, beta, mean, variance])
    return model


def _fine_tune(qat_model, steps=8, seed=3):
    qat_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = _images(8 * steps, seed, size=qat_model.input_shape[1], channels=qat_model.input_shape[-1])
    y = np.random.default_rng(seed).integers(0, CLASSES, len(x))
    history = qat_model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def _weighted_wrappers(qat_model):
    """(inner layer, number of weight quantizers) for every wrapped layer with a kernel."""
    found = []
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        if inner is not None and any("kernel" in w.name for w in layer.trainable_weights):
            found.append((inner, len(getattr(layer, "_weight_vars", []))))
    return found


# ---------------------------------------------------------------------------
# Keras 3: a clear error, and the tf_keras tests in a subprocess.
# ---------------------------------------------------------------------------


@keras3_only
def test_quantize_aware_under_keras3_names_the_one_command_path():
    model = _tiny("mobilenetv2_100")
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    for call in (
        lambda: kcz.quantization.quantize_aware(model),
        lambda: kcz.quantization.quantize_scope(),
        lambda: kcz.quantization.unsupported_layers(model),
    ):
        with pytest.raises(RuntimeError, match=r"needs tf_keras.*`TF_USE_LEGACY_KERAS=1 python"):
            call()
    # tfmot sets TF_USE_LEGACY_KERAS=1 when imported: it must not have been.
    assert os.environ.get("TF_USE_LEGACY_KERAS") == before


@keras3_only
def test_qat_tests_pass_under_tf_keras():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(Path(__file__))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    summary = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    counts = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary))
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == counts.get("errors", 0) == 0, summary
    assert counts.get("passed", 0) >= 10, summary
    assert counts.get("skipped") == 2, summary  # only the two Keras 3 tests


# ---------------------------------------------------------------------------
# tf_keras: QAT of the tiny ResNeXt and MobileNetV2, int8 export, numbers.
# ---------------------------------------------------------------------------


@legacy_only
@pytest.mark.parametrize("name", ["resnext50_32x4d", "mobilenetv2_100"])
def test_qat_then_full_integer_tflite_matches_the_qat_model(name, tmp_path):
    model = _tiny(name, randomize_bn="scale")
    qat = kcz.quantization.quantize_aware(model, calibration_data=_images(32, seed=5))
    assert qat is not model
    assert not any(isinstance(getattr(layer, "layer", layer), keras.layers.BatchNormalization)
                   for layer in qat.layers)  # fuse=True: deploy form, BNs folded

    # Every conv / dense kernel is fake-quantized, also those followed by a ReLU
    # (tfmot's own ReLU transform would drop their weight quantizers).
    wrapped = _weighted_wrappers(qat)
    assert len(wrapped) >= 10
    assert all(n >= 1 for _, n in wrapped), [layer.name for layer, n in wrapped if n == 0]
    if name == "resnext50_32x4d":
        assert any(isinstance(layer, kcz.layers.GroupConv2D) for layer, _ in wrapped)
    # Calibrated activation ranges, not tfmot's initial [-6, 6].
    values = {w.name: float(w.numpy()) for w in qat.weights if w.shape.rank == 0}
    ranges = [(values[n.replace("_max:", "_min:")], v) for n, v in values.items()
              if n.endswith(("output_max:0", "post_activation_max:0"))]
    assert len(ranges) >= 10 and (-6.0, 6.0) not in ranges, ranges

    # Before fine-tuning (the fused biases are zero, see _tiny) every int8 tensor of
    # the file equals the QAT model's; the outputs differ at most by a rare one-step
    # rounding tie (float vs integer accumulation): 46 dB-inf measured. Layers whose
    # emulation is off (e.g. tfmot's ReLU transform, which leaves the weights of a
    # Conv2D + ReLU float, or a second rounding before a fused ReLU) give 25-35 dB.
    exact = export.to_tflite(qat, tmp_path / "before.tflite", quantization="int8", num_samples=8)
    assert exact.quantization_aware and exact.float_ops == ()
    assert exact.snr_db >= 40, str(exact)

    _fine_tune(qat)
    report = export.to_tflite(qat, tmp_path / "qat_int8.tflite", quantization="int8", num_samples=32)
    print(f"\n{name}: QAT vs int8 file {exact.snr_db:.1f} dB before, {report.snr_db:.1f} dB after fine-tuning")
    assert report.quantization_aware and report.quantization == "int8"
    assert report.tolerance == f"snr_db >= {export.QAT_INT8_MIN_SNR_DB:g}"
    assert report.snr_db >= export.QAT_INT8_MIN_SNR_DB, str(report)
    assert report.float_ops == ()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=report.path)
    tensors = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    assert [op["op_name"] for op in ops][0] == "QUANTIZE" and ops[-1]["op_name"] == "DEQUANTIZE"
    for op in ops[1:-1]:  # full integer: int8 activations, int8/int32 constants
        assert all(tensors[i] in (np.int8, np.int32) for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0), op
    # int8 weights: well under the fp32 file of the float model (flatbuffer overhead aside).
    fp32 = export.to_tflite(kcz.deploy.fuse(model), tmp_path / "fp32.tflite", verify=False)
    assert report.file_size_bytes < 0.6 * fp32.file_size_bytes


@legacy_only
def test_unfused_qat_keeps_batch_norms_and_asks_for_calibration(tmp_path):
    model = _tiny("resnext50_32x4d")
    qat = kcz.quantization.quantize_aware(model, calibration_data=_images(16, seed=5), fuse=False)
    inner = [getattr(layer, "layer", layer) for layer in qat.layers]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in inner)
    _fine_tune(qat, steps=4)
    # The BN after each GroupConv2D becomes int8 MUL/ADD, whose constants have no
    # fake-quant range: without calibration data the file would not be full integer.
    with pytest.raises(export.ExportError, match=r"not full-integer: .*MUL.*representative_data"):
        export.to_tflite(qat, tmp_path / "no_calibration.tflite", quantization="int8")
    assert not (tmp_path / "no_calibration.tflite").exists()
    report = export.to_tflite(
        qat, tmp_path / "calibrated.tflite", quantization="int8",
        representative_data=_images(16, seed=6), num_samples=16,
    )
    assert report.float_ops == () and report.snr_db >= export.QAT_INT8_MIN_SNR_DB, str(report)
    # The staged int8 conversion (export.memory.calibrate_in_stages) writes TensorFlow's one-call file for QAT too.
    from keras_convzoo.export import tflite as tflite_lib

    real = tflite_lib.calibrate_in_stages
    tflite_lib.calibrate_in_stages = lambda converter: converter.convert()
    try:
        export.to_tflite(qat, tmp_path / "one_call.tflite", quantization="int8",
                         representative_data=_images(16, seed=6), num_samples=16)
    finally:
        tflite_lib.calibrate_in_stages = real
    assert (tmp_path / "one_call.tflite").read_bytes() == (tmp_path / "calibrated.tflite").read_bytes()


@legacy_only
def test_every_package_layer_has_a_quantize_config():
    from keras_convzoo.quantization import configs

    layers = kcz.layers
    localization = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    instances = {
        "ChannelShuffle": layers.ChannelShuffle(2),
        "ChannelSplit": layers.ChannelSplit(2),
        "CKConv": layers.CKConv(4, kernel_size=5),
        "Conv2D": layers.Conv2D(4, 1),
        "LayerNormalization": layers.LayerNormalization(),
        "DepthwiseConv2D": layers.DepthwiseConv2D(3),
        "FlexConv": layers.FlexConv(4, kernel_size=5),
        "SeparableFlexConv": layers.SeparableFlexConv(4, kernel_size=5),
        "GELU": layers.GELU(),
        "GroupConv2D": layers.GroupConv2D(8, 3, groups=2),
        "KernelMLP": layers.KernelMLP(4),
        "LayerScale": layers.LayerScale(0.5),
        "MAGNet": layers.MAGNet(4),
        "ReparamLargeKernelConv": layers.ReparamLargeKernelConv(7, small_kernel=3),
        "ShiftConv2D": layers.ShiftConv2D(8),
        "SpatialTransformer": layers.SpatialTransformer(localization),
        "SqueezeExcite": layers.SqueezeExcite(),
        "StochasticDepth": layers.StochasticDepth(0.1),
    }
    # a new layer needs a config (and a line here); BatchNormalization is tf_keras' own class under tf_keras
    assert layers.BatchNormalization is keras.layers.BatchNormalization
    assert sorted(instances) == sorted(set(layers.__all__) - {"BatchNormalization"})
    no_op = {"ChannelShuffle", "ChannelSplit", "StochasticDepth", "MAGNet", "KernelMLP",
             "CKConv", "FlexConv", "SeparableFlexConv"}  # continuous convs: training form
    for name, layer in instances.items():
        config = configs.zoo_quantize_config(layer)
        assert config is not None, name
        assert isinstance(config, configs.NoOpQuantizeConfig) == (name in no_op), name
        restored = type(config).from_config(config.get_config())
        assert restored == config, name
    for standard in (keras.layers.BatchNormalization(), keras.layers.LayerNormalization(),
                     keras.layers.Multiply()):
        assert configs.zoo_quantize_config(standard).get_output_quantizers(standard)
    assert configs.zoo_quantize_config(keras.layers.Dense(3)) is None  # tfmot's own


def _layer_model(kind):
    layers = kcz.layers
    inputs = keras.Input((16, 16, 8))
    x = inputs
    if kind == "group_conv":
        x = keras.layers.ReLU()(layers.GroupConv2D(16, 3, groups=4, padding="same")(x))
    elif kind == "shift_conv":
        x = keras.layers.ReLU()(layers.ShiftConv2D(16)(x))
    elif kind == "layer_scale":
        y = layers.StochasticDepth(0.1)(layers.LayerScale(0.5)(keras.layers.Conv2D(8, 1)(x)))
        x = keras.layers.Add()([x, y])
    elif kind == "gelu":
        x = layers.GELU()(keras.layers.Conv2D(16, 1)(x))
    elif kind == "squeeze_excite":
        x = layers.SqueezeExcite(ratio=0.25)(x)
    elif kind == "reparam":
        x = keras.layers.ReLU()(layers.ReparamLargeKernelConv(7, small_kernel=3)(x))
    elif kind == "shuffle":
        left, right = layers.ChannelSplit(2)(x)
        x = layers.ChannelShuffle(2)(keras.layers.Concatenate()([left, keras.layers.Conv2D(4, 1)(right)]))
    elif kind == "flex_conv":
        x = layers.FlexConv(8, kernel_size=5, kernel_hidden=8, mask_init=0.4, seed=0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x), name=kind)


@legacy_only
@pytest.mark.parametrize(
    "kind, needs_calibration",
    [("group_conv", False), ("shift_conv", False), ("layer_scale", False), ("gelu", False),
     ("squeeze_excite", True), ("reparam", False), ("shuffle", False), ("flex_conv", False)],
)
def test_layer_configs_train_and_convert_to_full_integer(kind, needs_calibration, tmp_path):
    model = _layer_model(kind)
    data = _images(32, seed=7, size=16, channels=8)
    qat = kcz.quantization.quantize_aware(model, calibration_data=data[:16])
    qat.compile("adam", "mse")
    qat.fit(data, np.random.default_rng(0).standard_normal((32, 4)).astype("float32"),
            batch_size=8, epochs=1, verbose=0)
    if needs_calibration:  # SqueezeExcite's squeeze vector is inside the layer
        with pytest.raises(export.ExportError, match="representative_data"):
            export.to_tflite(qat, tmp_path / "q.tflite", quantization="int8")
    report = export.to_tflite(  # checked on inputs like its training data (unit-normal images)
        qat, tmp_path / "q.tflite", quantization="int8", verification_data=data[16:],
        representative_data=data[16:] if needs_calibration else None,
    )
    assert report.float_ops == () and report.snr_db >= export.QAT_INT8_MIN_SNR_DB, str(report)


@legacy_only
def test_spatial_transformer_trains_but_cannot_be_full_integer(tmp_path):
    localization = keras.Sequential([
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8, activation="tanh")])
    inputs = keras.Input((16, 16, 8))
    x = kcz.layers.SpatialTransformer(localization, output_size=(12, 12))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x)))
    data = _images(16, seed=8, size=16, channels=8)
    qat = kcz.quantization.quantize_aware(model, calibration_data=data)
    qat.compile("adam", "mse")
    qat.fit(data, data[:, 0, 0, :4], batch_size=8, epochs=1, verbose=0)
    # The sampler computes integer pixel indices (FLOOR, CAST): no int8 kernels.
    with pytest.raises(export.ExportError, match=r"not full-integer: .*CAST.*FLOOR"):
        export.to_tflite(qat, tmp_path / "stn.tflite", quantization="int8", representative_data=data)


@legacy_only
def test_quantize_scope_reloads_a_saved_qat_model(tmp_path):
    model = _layer_model("group_conv")
    qat = kcz.quantization.quantize_aware(model, calibration_data=_images(8, seed=9, size=16, channels=8))
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with kcz.quantization.quantize_scope():
        restored = keras.models.load_model(path)
    x = _images(2, seed=10, size=16, channels=8)
    np.testing.assert_allclose(restored(x).numpy(), qat(x).numpy(), atol=1e-6)


@legacy_only
def test_bad_arguments():
    quantize_aware = kcz.quantization.quantize_aware
    model = _layer_model("gelu")
    with pytest.raises(TypeError, match="tf_keras functional or Sequential"):
        quantize_aware("model")

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        quantize_aware(Subclassed())
    with pytest.raises(TypeError, match="fuse"):
        quantize_aware(model, fuse="yes")
    with pytest.raises(TypeError, match="calibration_data"):
        quantize_aware(model, calibration_data=5)

    inputs = keras.Input((4,))
    odd = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs))
    assert kcz.quantization.unsupported_layers(odd)[0][:2] == ("doubler", "Lambda")
    with pytest.raises(ValueError, match=r"cannot quantize 1 layer.*'doubler' \(Lambda\)"):
        quantize_aware(odd, fuse=False)
