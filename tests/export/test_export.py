"""TFLite and ONNX export: conversion, verification against Keras, errors."""

import dataclasses
import os

import numpy as np
import onnx  # installed by the `test` extra: a missing onnx fails these tests instead of skipping them
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import GroupConv2D
from keras_convzoo.testing import random_array, tflite_filter_shapes

pytestmark = pytest.mark.export

IMPLEMENTATIONS = ("native", "depthwise", "split", "dense")


def _group_conv_model(implementation, input_shape=(16, 16, 32), conv=None):
    """Two grouped convolutions: "same" stride 1, then "valid" stride 2."""
    conv = conv or (lambda *a, **k: GroupConv2D(*a, implementation=implementation, **k))
    inputs = keras.Input(input_shape, name="image")
    x = conv(32, 3, padding="same", groups=8, name="gconv1")(inputs)
    x = conv(16, 3, strides=2, padding="valid", groups=8, name="gconv2")(x)
    return keras.Model(inputs, x, name=f"gconv_{implementation}")


def _randomize(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights(
        [0.2 * rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()]
    )
    return model


@pytest.fixture(scope="module")
def tiny_resnext():
    spec = kcz.get_spec("resnext50_32x4d")
    return kcz.create_model(
        "resnext50_32x4d", input_shape=(32, 32, 3), classes=5, **spec.test_overrides
    )


def _resnext_calibration():
    """The int8 file's 8 calibration images; with no verification_data they are also what it is checked on."""
    return [random_array((1, 32, 32, 3), seed=100 + i) for i in range(8)]


@pytest.fixture(scope="module")
def resnext_exports(tiny_resnext, tmp_path_factory):
    """The tiny ResNeXt exported once per format, shared by the checks below."""
    folder = tmp_path_factory.mktemp("resnext")
    calibration = _resnext_calibration()
    reports = {}
    for quantization in (None, "float16", "dynamic", "int8"):
        reports[quantization or "fp32"] = export.to_tflite(
            tiny_resnext,
            str(folder / f"resnext_{quantization or 'fp32'}.tflite"),
            quantization=quantization,
            representative_data=calibration if quantization == "int8" else None,
        )
    reports["onnx"] = export.to_onnx(tiny_resnext, str(folder / "resnext.onnx"))
    for name, r in reports.items():
        print(f"\n[{name}]\n{r}")
    return reports


# ---------------------------------------------------------------------------
# 1. GroupConv2D: every lowering converts with verified numerics.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_group_conv2d_exports_to_tflite_and_onnx(implementation, tmp_path):
    model = _randomize(_group_conv_model(implementation))
    tfl = export.to_tflite(model, tmp_path / "gconv.tflite")
    onx = export.to_onnx(model, tmp_path / "gconv.onnx")
    for r in (tfl, onx):
        assert r.relative_diff <= 1e-4, str(r)
        assert r.num_samples == export.DEFAULT_NUM_SAMPLES and r.output_scale > 0
        assert r.file_size_bytes == os.path.getsize(r.path) > 0
    assert tfl.input_shape == (1, 16, 16, 32)
    assert onx.input_shape == (None, 16, 16, 32)

    proto = onnx.load(str(tmp_path / "gconv.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].name == "image"

    # The runtimes against Keras' own grouped Conv2D carrying the same weights.
    reference = _group_conv_model(
        "keras", conv=lambda *a, **k: keras.layers.Conv2D(*a, **k)
    )
    reference.set_weights(model.get_weights())
    x = random_array((3, 16, 16, 32), seed=7)
    expected = reference(x, training=False).numpy()
    scale = np.abs(expected).max()
    (tfl_out,) = export.run_tflite(tfl.path, x)
    (onnx_out,) = export.run_onnx(onx.path, x)
    assert tfl_out.shape == onnx_out.shape == expected.shape == (3, 7, 7, 16)
    assert np.abs(tfl_out - expected).max() <= 1e-4 * scale
    assert np.abs(onnx_out - expected).max() <= 1e-4 * scale


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_group_conv2d_exports_to_full_integer_tflite(implementation, tmp_path):
    # Every lowering gives a constant filter that int8 quantizes symmetrically
    # ("dense" used to build its block-diagonal filter with an Einsum that the
    # converter kept as an op: an asymmetric int8 filter that CONV_2D rejects).
    model = _randomize(_group_conv_model(implementation))
    calibration = random_array((16, 16, 16, 32), seed=11)
    r = export.to_tflite(
        model, tmp_path / "gconv_int8.tflite", quantization="int8",
        representative_data=calibration, num_samples=4,
    )
    assert r.snr_db >= export.INT8_MIN_SNR_DB and r.float_ops == ()


def test_onnx_keeps_dynamic_batch_and_spatial_dims(tmp_path):
    model = _randomize(_group_conv_model("depthwise", input_shape=(None, None, 32)))
    r = export.to_onnx(model, tmp_path / "dyn.onnx", input_shape=None, num_samples=2)
    assert r.input_shape == (None, None, None, 32)
    assert r.relative_diff <= 1e-4
    dims = onnx.load(r.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [False, False, False, True]
    for shape in [(3, 19, 12, 32), (1, 40, 40, 32)]:
        x = random_array(shape, seed=3)
        (out,) = export.run_onnx(r.path, x)
        expected = model(x, training=False).numpy()
        assert np.abs(out - expected).max() <= 1e-4 * np.abs(expected).max()


def test_onnx_fixed_batch_and_input_shape(tmp_path):
    model = _randomize(_group_conv_model("split", input_shape=(None, None, 32)))
    r = export.to_onnx(
        model, tmp_path / "fixed.onnx", dynamic_batch=False, input_shape=(20, 24, 32), num_samples=2
    )
    assert r.input_shape == (1, 20, 24, 32)
    dims = onnx.load(r.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 20, 24, 32]


def test_tflite_fixes_none_dims_to_input_shape_or_224(tmp_path):
    model = _randomize(_group_conv_model("split", input_shape=(None, None, 32)))
    r = export.to_tflite(model, tmp_path / "a.tflite", input_shape=(20, 24, 32), num_samples=1)
    assert r.input_shape == (1, 20, 24, 32) and r.relative_diff <= 1e-4
    r = export.to_tflite(model, tmp_path / "b.tflite", verify=False)
    assert r.input_shape == (1, export.DEFAULT_SPATIAL_SIZE, export.DEFAULT_SPATIAL_SIZE, 32)
    assert r.max_abs_diff is None and r.num_samples == 0


def test_multi_output_model_keeps_output_order(tmp_path):
    inputs = keras.Input((16, 16, 32))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = [keras.layers.Conv2D(8, 3)(inputs), keras.layers.Dense(3)(pooled), pooled]
    model = _randomize(keras.Model(inputs, outputs))
    x = random_array((2, 16, 16, 32), seed=4)
    expected = [y.numpy() for y in model(x, training=False)]
    for r, run in [
        (export.to_tflite(model, tmp_path / "m.tflite", num_samples=2), export.run_tflite),
        (export.to_onnx(model, tmp_path / "m.onnx", num_samples=2), export.run_onnx),
    ]:
        assert r.relative_diff <= 1e-4 and r.top1_agreement is None
        got = run(r.path, x)
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=1e-5)


# ---------------------------------------------------------------------------
# 2. The tiny ResNeXt in every format.
# ---------------------------------------------------------------------------


def test_resnext_tflite_fp32(resnext_exports):
    r = resnext_exports["fp32"]
    assert r.format == "tflite" and r.quantization is None
    assert r.input_shape == (1, 32, 32, 3)
    assert r.relative_diff <= export.FP32_MAX_RELATIVE_DIFF
    assert r.top1_agreement == 1.0
    assert r.snr_db > 60


def test_resnext_tflite_float16(resnext_exports):
    r, fp32 = resnext_exports["float16"], resnext_exports["fp32"]
    assert r.quantization == "float16"
    assert r.snr_db >= export.FLOAT16_MIN_SNR_DB and r.relative_diff < 5e-3  # this twin: ~1e-3
    assert r.top1_agreement == 1.0
    assert r.file_size_bytes < 0.6 * fp32.file_size_bytes


def test_resnext_tflite_dynamic(resnext_exports):
    r, fp32 = resnext_exports["dynamic"], resnext_exports["fp32"]
    assert r.quantization == "dynamic"
    assert r.snr_db >= export.DYNAMIC_MIN_SNR_DB and r.relative_diff <= 5e-2  # this twin: 0.3-1 %
    assert r.file_size_bytes < 0.5 * fp32.file_size_bytes


def test_resnext_tflite_int8(resnext_exports, tiny_resnext):
    r, fp32 = resnext_exports["int8"], resnext_exports["fp32"]
    assert r.quantization == "int8"
    assert r.snr_db >= export.INT8_MIN_SNR_DB
    # The report's numbers, recomputed by running the written file on the inputs it was checked on.
    assert r.real_inputs and r.num_samples == 8
    x = np.concatenate(_resnext_calibration())
    (got,) = export.run_tflite(r.path, x)
    expected = tiny_resnext(x, training=False).numpy()
    assert float(np.abs(got - expected).max()) == pytest.approx(r.max_abs_diff, rel=1e-3)
    assert r.top1_agreement == float(np.mean(got.argmax(-1) == expected.argmax(-1)))
    # Agreement must be exactly 1 here: the file's largest error (measured 0.0035) is below half of Keras'
    # smallest top-1 margin on these inputs (measured 0.024), so no argmax can flip.
    top2 = np.sort(expected, axis=-1)[:, -2:]
    assert r.max_abs_diff < float(np.min(top2[:, 1] - top2[:, 0])) / 2
    assert r.top1_agreement == 1.0
    assert r.file_size_bytes < fp32.file_size_bytes / 2
    # Full-integer: float I/O, int8 everywhere in between.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=r.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"QUANTIZE", "DEQUANTIZE"} <= ops


def test_resnext_onnx(resnext_exports, tiny_resnext):
    r = resnext_exports["onnx"]
    assert r.format == "onnx" and r.quantization is None
    assert r.input_shape == (None, 32, 32, 3)
    assert r.relative_diff <= export.ONNX_MAX_RELATIVE_DIFF
    assert r.top1_agreement == 1.0
    onnx.checker.check_model(onnx.load(r.path), full_check=True)
    x = random_array((5, 32, 32, 3), seed=11)
    (out,) = export.run_onnx(r.path, x)
    np.testing.assert_allclose(out, tiny_resnext(x, training=False).numpy(), atol=1e-5)


def test_report_str_and_dict(resnext_exports):
    r = resnext_exports["int8"]
    text = str(r)
    for field in ("format", "path", "quantization", "file_size_bytes", "max_abs_diff",
                  "mean_abs_diff", "output_scale", "relative_diff", "top1_agreement",
                  "snr_db", "tolerance"):
        assert field in text
    assert len(text.splitlines()) >= 13
    assert r.to_dict()["quantization"] == "int8"
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'max_abs_diff'"):
        r.max_abs_diff = 0.0  # frozen


@pytest.mark.parametrize("form", ["callable", "array", "tf_dataset", "pairs"])
def test_int8_representative_data_forms(form, tmp_path):
    model = _randomize(_group_conv_model("split"))
    data = random_array((6, 16, 16, 32), seed=5)
    representative = {
        "callable": lambda: (d[None] for d in data),
        "array": data,
        "tf_dataset": tf.data.Dataset.from_tensor_slices(data).batch(2),
        "pairs": [(d, 0) for d in data],
    }[form]
    r = export.to_tflite(
        model, tmp_path / "q.tflite", quantization="int8", representative_data=representative,
        num_samples=2,
    )
    assert r.snr_db >= export.INT8_MIN_SNR_DB


def test_int8_io(tmp_path):
    model = _randomize(_group_conv_model("split"))
    data = [random_array((16, 16, 32), seed=i) for i in range(6)]
    r = export.to_tflite(
        model, tmp_path / "q.tflite", quantization="int8", representative_data=data,
        int8_io=True, num_samples=2,
    )
    from ai_edge_litert.interpreter import Interpreter

    assert Interpreter(model_path=r.path).get_input_details()[0]["dtype"] == np.int8
    assert r.snr_db >= export.INT8_MIN_SNR_DB


# ---------------------------------------------------------------------------
# 3. Bad arguments.
# ---------------------------------------------------------------------------


def test_bad_arguments(tmp_path):
    model = _group_conv_model("split")
    with pytest.raises(ValueError, match="Allowed values.*float16.*dynamic.*int8"):
        export.to_tflite(model, tmp_path / "m.tflite", quantization="int4")
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(model, tmp_path / "m.tflite", quantization="int8")
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(model, tmp_path / "m.tflite", quantization="int8", representative_data=[])
    with pytest.raises(ValueError, match="expected"):
        export.to_tflite(
            model, tmp_path / "m.tflite", quantization="int8",
            representative_data=[np.zeros((8, 8, 32), "float32")],
        )
    with pytest.raises(ValueError, match="only with quantization='int8'"):
        export.to_tflite(model, tmp_path / "m.tflite", representative_data=[np.zeros((16, 16, 32))])
    missing = tmp_path / "no_such_folder" / "m.tflite"
    with pytest.raises(ValueError, match="does not exist"):
        export.to_tflite(model, missing)
    with pytest.raises(ValueError, match="does not exist"):
        export.to_onnx(model, tmp_path / "no_such_folder" / "m.onnx")
    with pytest.raises(ValueError, match="input_shape"):
        export.to_tflite(model, tmp_path / "m.tflite", input_shape=(16, 16, 8))
    with pytest.raises(ValueError, match="input_shape"):
        export.to_onnx(model, tmp_path / "m.onnx", input_shape=(1, 16, 16, 32))
    with pytest.raises(ValueError, match="num_samples"):
        export.to_tflite(model, tmp_path / "m.tflite", num_samples=0)
    pixels = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"needs `representative_data`: .* real images of shape \(8, 8, 3\) in the "
                                         r"model's input range, 0-255 pixels \(the model scales them"):
        export.to_tflite(pixels, tmp_path / "m.tflite", quantization="int8")
    # the path of a saved model instead of the model: a TypeError that says how to load it
    for exporter in (export.to_tflite, export.to_onnx):
        with pytest.raises(TypeError, match=r"`model` must be a Keras model, not a file path: .*load_model.*"
                                            r"Received: model='m.keras'"):
            exporter("m.keras", tmp_path / "out")
    with pytest.raises(TypeError, match="`model` must be a Keras model. Received: model of type dict"):
        export.to_onnx({}, tmp_path / "m.onnx")
    # another format's extension (m.keras would be overwritten; a TFLite file named .onnx misleads): refused
    with pytest.raises(ValueError, match=r"`path` ends in '\.onnx'.*writes a \.tflite file: name it e\.g\. 'm\.tflite'"):
        export.to_tflite(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"`path` ends in '\.keras'.*writes a \.onnx file"):
        export.to_onnx(model, tmp_path / "m.keras")
    assert not missing.parent.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(LEGACY_KERAS, reason="Keras 3's model.quantize")
def test_a_model_quantized_by_keras_is_refused_for_tflite_with_the_way_out(tmp_path):
    """TFLite's converter cannot convert Keras' int8 Dense ops: a one-line ValueError instead of its MLIR dump."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, name="head1"), keras.layers.Dense(3, name="head2")])
    float_model = keras.models.clone_model(model)
    float_model.set_weights(model.get_weights())
    model.quantize("int8")
    assert export.keras_quantized_layers(model) == [("head1", "int8"), ("head2", "int8")]
    assert export.keras_quantized_layers(float_model) == []
    with pytest.raises(ValueError, match=r"quantized by Keras' `model.quantize` \(layer `head1`: int8, 2 layer\(s\)\)"
                                         r".*quantization='int8'"):
        export.to_tflite(model, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
    report = export.to_tflite(float_model, tmp_path / "m.tflite", quantization="dynamic")  # the way out works
    assert report.quantization == "dynamic" and (tmp_path / "m.tflite").exists()


# ---------------------------------------------------------------------------
# 4. Verification catches a wrong file.
# ---------------------------------------------------------------------------


def test_compare_and_check_flag_mismatch():
    ref = random_array((4, 10), seed=0)
    metrics = export.compare_outputs([ref], [ref])
    assert metrics["max_abs_diff"] == 0.0 and metrics["snr_db"] == float("inf")
    assert metrics["top1_agreement"] == 1.0
    # one row of four with another argmax: agreement 3/4 exactly
    moved = ref.copy()
    moved[2, (int(ref[2].argmax()) + 1) % 10] = np.abs(ref).max() + 1.0
    assert export.compare_outputs([ref], [moved])["top1_agreement"] == 0.75

    wrong = ref + 0.005 * np.abs(ref).max()
    metrics = export.compare_outputs([ref], [wrong])
    assert metrics["relative_diff"] == pytest.approx(0.005, rel=1e-4)
    base = dict(path="x.tflite", file_size_bytes=1, num_samples=4)
    for fmt, quantization in [("tflite", None), ("onnx", None)]:
        report = export.ExportReport(format=fmt, quantization=quantization, **base, **metrics)
        with pytest.raises(ValueError, match=r"relative_diff=0\.005 fails"):
            export.check_report(report)
    # The same 0.5 % error is fine for float16 and dynamic.
    for quantization in ("float16", "dynamic"):
        export.check_report(
            export.ExportReport("tflite", quantization=quantization, **base, **metrics)
        )

    noisy = ref + np.random.default_rng(1).standard_normal(ref.shape).astype("float32") * ref.std()
    metrics = export.compare_outputs([ref], [noisy])
    assert metrics["snr_db"] == pytest.approx(0.0, abs=3.0)
    with pytest.raises(ValueError, match="snr_db"):
        export.check_report(export.ExportReport("tflite", quantization="int8", **base, **metrics))

    nan = ref.copy()
    nan[0, 0] = np.nan
    metrics = export.compare_outputs([ref], [nan])
    assert metrics["max_abs_diff"] == float("inf")
    for quantization in export.QUANTIZATIONS:
        non_finite = r"reproduce the Keras model: (relative_diff=inf|snr_db=-inf) fails"
        with pytest.raises(export.VerificationError, match=non_finite):
            export.check_report(
                export.ExportReport("tflite", quantization=quantization, **base, **metrics)
            )

    with pytest.raises(ValueError, match="shape"):
        export.compare_outputs([ref], [ref[:, :5]])
    with pytest.raises(ValueError, match="output"):
        export.compare_outputs([ref], [ref, ref])


def test_to_tflite_raises_when_the_runtime_disagrees(tmp_path, monkeypatch):
    from keras_convzoo.export import tflite as tflite_lib

    real = tflite_lib.run_tflite

    def perturbed(path, x, num_threads=None):
        return [y + 1e-3 * np.abs(y).max() for y in real(path, x, num_threads)]

    model = _randomize(_group_conv_model("split"))
    good = export.to_tflite(model, tmp_path / "m.tflite")  # a verified file at the target
    before = (tmp_path / "m.tflite").read_bytes()
    assert good.path == str(tmp_path / "m.tflite") and good.file_size_bytes == len(before)
    monkeypatch.setattr(tflite_lib, "run_tflite", perturbed)
    with pytest.raises(export.VerificationError, match=r"relative_diff=0\.001.*fails relative_diff <= 0\.0001.*"
                       r"Nothing was written at .*m\.tflite.*deleted"):
        export.to_tflite(model, tmp_path / "m.tflite")
    # the rejected file replaced nothing and left nothing behind
    assert (tmp_path / "m.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    with pytest.raises(export.VerificationError, match=r"kept at .*m\.rejected\.tflite"):
        export.to_tflite(model, tmp_path / "m.tflite", keep_failed=True)
    assert (tmp_path / "m.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.rejected.tflite", "m.tflite"]
    with pytest.raises(TypeError, match="keep_failed"):
        export.to_tflite(model, tmp_path / "m.tflite", keep_failed="yes")
    # Without verification the (unverified) file is written and nothing is measured.
    r = export.to_tflite(model, tmp_path / "n.tflite", verify=False)
    assert r.relative_diff is None and os.path.exists(r.path)


def test_a_failed_conversion_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from keras_convzoo.export import tflite as tflite_lib

    model = _randomize(_group_conv_model("split"))
    export.to_tflite(model, tmp_path / "m.tflite")
    before = (tmp_path / "m.tflite").read_bytes()

    def disk_full(path, x, num_threads=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tflite_lib, "run_tflite", disk_full)  # fails after the temporary file is written
    with pytest.raises(OSError, match="No space left"):
        export.to_tflite(model, tmp_path / "m.tflite")
    assert (tmp_path / "m.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_to_onnx_raises_when_the_runtime_disagrees(tmp_path, monkeypatch):
    from keras_convzoo.export import onnx as onnx_lib

    real = onnx_lib.run_onnx
    monkeypatch.setattr(
        onnx_lib, "run_onnx", lambda path, x: [np.flip(y, axis=-1) for y in real(path, x)]
    )
    model = _randomize(_group_conv_model("split"))
    with pytest.raises(export.VerificationError, match="onnx file.*Nothing was written at"):
        export.to_onnx(model, tmp_path / "m.onnx", keep_failed=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.rejected.onnx"]


def test_onnx_optimizer_runs_in_place_and_falls_back_to_copying(tmp_path, monkeypatch):
    # tf2onnx deep-copies the graph before each optimizer pass unless
    # TF2ONNX_CATCH_ERRORS is FALSE; to_onnx converts in place first and, when a
    # pass raises, converts again with tf2onnx's copying (the pass is skipped).
    import tf2onnx.optimizer as tf2onnx_optimizer

    seen = []

    class _Failing:
        graph_been_opt = False

        def optimize(self, graph, iteration):
            seen.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
            raise RuntimeError("pass failed")

    real = tf2onnx_optimizer._get_optimizers
    monkeypatch.setattr(
        tf2onnx_optimizer, "_get_optimizers", lambda: {**real(), "failing": _Failing}
    )
    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    model = _randomize(_group_conv_model("split"))
    r = export.to_onnx(model, tmp_path / "m.onnx", num_samples=2)
    assert r.relative_diff <= 1e-4
    assert seen[0] == "FALSE" and set(seen[1:]) == {None}  # absent: tf2onnx copies
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ
    seen.clear()
    monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", "FALSE")  # the user's setting is kept
    with pytest.raises(export.ExportError, match="pass failed"):
        export.to_onnx(model, tmp_path / "u.onnx", num_samples=2)
    assert seen == ["FALSE"] and os.environ["TF2ONNX_CATCH_ERRORS"] == "FALSE"
    assert not (tmp_path / "u.onnx").exists()


# ---------------------------------------------------------------------------
# 5. Layers that cannot convert give a clear error, never a broken file.
# ---------------------------------------------------------------------------


class _PythonLayer(keras.layers.Layer):
    def call(self, x):
        y = tf.numpy_function(lambda a: a * 2.0, [x], tf.float32)
        y.set_shape(x.shape)
        return y


def test_unconvertible_layer_names_the_problem(tmp_path):
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, _PythonLayer()(inputs))
    with pytest.raises(export.ExportError, match=r"TFLite conversion.*PyFunc") as info:
        export.to_tflite(model, tmp_path / "m.tflite")
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(export.ExportError, match=r"tf2onnx.*PyFunc"):
        export.to_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_keras_grouped_conv2d_onnx_is_refused_not_written(tmp_path):
    # Keras 3 and tf_keras run Conv2D(groups>1) through a nested XLA-compiled
    # function that tf2onnx leaves unconverted; the file would be invalid.
    model = _group_conv_model("keras", conv=lambda *a, **k: keras.layers.Conv2D(*a, **k))
    with pytest.raises(export.ExportError, match="PartitionedCall.*GroupConv2D"):
        export.to_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_dense_group_channels_writes_narrow_groups_as_block_diagonal_convs(quantization, tmp_path):
    inputs = keras.Input((12, 12, 32))
    x = GroupConv2D(32, 3, padding="same", groups=8, name="narrow")(inputs)  # 4 channels per group
    x = GroupConv2D(16, 3, strides=2, padding="same", groups=2, name="wide")(x)  # 16 channels per group
    model = _randomize(keras.Model(inputs, x))
    kwargs = {"quantization": quantization}
    if quantization:
        kwargs["representative_data"] = random_array((16, 12, 12, 32), seed=5)
    shapes = {}
    for limit in (None, 4, 16):
        report = export.to_tflite(model, tmp_path / f"g{limit}.tflite", dense_group_channels=limit, **kwargs)
        if quantization:
            assert report.snr_db >= export.INT8_MIN_SNR_DB and report.float_ops == ()
        else:
            assert report.relative_diff <= export.FP32_MAX_RELATIVE_DIFF
        shapes[limit] = tflite_filter_shapes(report.path)
    assert shapes[None] == [(32, 3, 3, 4), (16, 3, 3, 16)]  # grouped CONV_2D ops
    assert shapes[4] == [(32, 3, 3, 32), (16, 3, 3, 16)]  # only the narrow groups go dense
    assert shapes[16] == [(32, 3, 3, 32), (16, 3, 3, 32)]
    assert [layer.implementation for layer in model.layers[1:]] == ["auto", "auto"]  # restored


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8"])
def test_bad_dense_group_channels_is_rejected_before_writing(bad, tmp_path):
    model = _group_conv_model("auto")
    path = tmp_path / "never.tflite"
    with pytest.raises(ValueError, match="dense_group_channels"):
        export.to_tflite(model, path, dense_group_channels=bad)
    assert not path.exists()


def test_saved_model_replaces_an_older_folder_only_once_verified(tmp_path, monkeypatch):
    from keras_convzoo.export import saved_model as saved_model_lib

    model = _randomize(_group_conv_model("split"))
    target = tmp_path / "sm"
    first = export.to_saved_model(model, target)
    assert first.path == str(target) and first.file_size_bytes > 0 and first.convert_seconds > 0
    (target / "marker.txt").write_text("old")  # a file only the old folder has
    real = saved_model_lib.run_saved_model
    monkeypatch.setattr(saved_model_lib, "run_saved_model", lambda path, x: [-y for y in real(path, x)])
    with pytest.raises(export.VerificationError, match="Nothing was written at"):
        export.to_saved_model(model, target)
    assert (target / "marker.txt").read_text() == "old"  # the older folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    monkeypatch.setattr(saved_model_lib, "run_saved_model", real)
    export.to_saved_model(model, target)  # verified: swapped in whole
    assert not (target / "marker.txt").exists() and (target / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_tflite_interpreter_opens_paths_and_bytes_with_threads(tmp_path):
    from keras_convzoo.export import tflite_interpreter

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = tmp_path / "m.tflite"
    export.to_tflite(model, path)
    x = np.arange(4, dtype="float32")[None]
    for source in (path, str(path), path.read_bytes()):
        interpreter = tflite_interpreter(source, num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                                   model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"`num_threads` must be a positive int or None. Received: num_threads=0"):
        tflite_interpreter(path, num_threads=0)
