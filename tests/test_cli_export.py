"""``convzoo export``: TFLite fp32 / int8 with random or folder calibration, ONNX, SavedModel, errors; in-process."""

import os

import numpy as np
import pytest

from keras_convzoo import cli, export
from keras_convzoo.applications import create_model, get_spec
from keras_convzoo.layers import GroupConv2D

pytestmark = pytest.mark.export

# The tiny MobileNetV2 twin with a 10-class head: int8 softmax outputs of a
# random 1000-class head (all about 1e-3) would fall under the int8 step 1/256.
BASE = ["export", "mobilenetv2_035", "--tiny", "--classes", "10", "--input-size", "32"]


def _rows(out):
    rows = {}
    for line in out.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def test_export_tflite_fp32_prints_the_report_table(capsys, tmp_path):
    out_file = tmp_path / "m.tflite"
    assert cli.main(BASE + ["--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"mobilenetv2_035 (tiny twin), fused -> {out_file}"
    assert "ExportReport (tflite)" in out
    rows = _rows(out)
    assert rows["format"] == "tflite" and rows["quantization"] == "-"
    assert rows["input_shape"] == "(1, 32, 32, 3)" and rows["tolerance"] == "relative_diff <= 0.0001"
    assert float(rows["relative_diff"]) <= 1e-4
    assert rows["file_size_bytes"].startswith(f"{os.path.getsize(out_file):,} bytes")
    (probs,) = export.run_tflite(out_file, np.zeros((2, 32, 32, 3), "float32"))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)  # the softmax head is kept


def test_export_int8_with_random_calibration_shows_progress(capsys, tmp_path):
    out_file = tmp_path / "m_int8.tflite"
    argv = BASE + ["--quantize", "int8", "--calibration", "random", "--calibration-samples", "12",
                   "--out", str(out_file)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows["quantization"] == "int8" and rows["float_ops"] == "none (full integer)"
    assert float(rows["snr_db"].split()[0]) >= export.INT8_MIN_SNR_DB
    # stderr is no terminal here (a log): the bar is written once, full, without redraws.
    assert "\r" not in captured.err
    assert captured.err.count("calibration [") == 1 and "calibration [" + "#" * 30 + "] 12/12\n" in captured.err
    assert export.float_ops(out_file) == ()


def test_export_int8_with_a_folder_of_images(capsys, tmp_path):
    import tensorflow as tf

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        png = tf.io.encode_png(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        (folder / f"{i}.png").write_bytes(png.numpy())
    out_file = tmp_path / "m_int8.tflite"
    argv = BASE + ["--quantize", "int8", "--calibration", str(folder), "--out", str(out_file)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "] 6/6\n" in captured.err  # all six images, resized to 32x32, calibrated
    assert _rows(captured.out)["float_ops"] == "none (full integer)"


def test_export_onnx_and_saved_model(capsys, tmp_path):
    import onnx  # the `test` extra installs it; the TFLite tests of this file do not need it, none is skipped
    assert cli.main(BASE + ["--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["format"] == "onnx" and float(rows["relative_diff"]) <= 1e-4
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    assert cli.main(BASE + ["--format", "saved_model", "--no-fuse", "--out", str(tmp_path / "sm")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"mobilenetv2_035 (tiny twin) -> {tmp_path / 'sm'}"
    assert _rows(out)["format"] == "saved_model" and (tmp_path / "sm" / "saved_model.pb").exists()


def test_export_loads_weights_and_the_unfused_form(capsys, tmp_path):
    from keras_convzoo.applications import create_model, get_spec

    spec = get_spec("mobilenetv2_035")
    model = create_model("mobilenetv2_035", input_shape=(32, 32, 3), classes=10, **spec.test_overrides)
    rng = np.random.default_rng(1)
    model.set_weights([0.1 * rng.standard_normal(w.shape).astype("float32") + (1.0 if "variance" in w.name else 0.0)
                       for w in model.weights])
    weights = tmp_path / "m.weights.h5"
    model.save_weights(str(weights))
    out_file = tmp_path / "w.tflite"
    assert cli.main(BASE + ["--weights", str(weights), "--no-fuse", "--out", str(out_file)]) == 0
    assert capsys.readouterr().out.startswith("mobilenetv2_035 (tiny twin) ->")
    x = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    (probs,) = export.run_tflite(out_file, x)
    np.testing.assert_allclose(probs, model(x, training=False).numpy(), atol=1e-5)


def test_export_tiles_large_depthwise_kernels_unless_told_not_to(capsys, tmp_path):
    """The tiny ConvNeXt twin at 32x32 has five 7x7 depthwise convs, on 8x8, 4x4, 2x2, 2x2 and 1x1
    maps: by default 3 + 3 pieces, then only the 3x3 and 1x1 taps that reach the small maps
    (one piece each); whole with 0 or 49."""
    from ai_edge_litert.interpreter import Interpreter

    base = ["export", "convnext_tiny", "--tiny", "--input-size", "32"]
    counts = {}
    for taps in (None, "0", "49"):
        out_file = tmp_path / f"c{taps}.tflite"
        assert cli.main(base + (["--depthwise-max-taps", taps] if taps else []) + ["--out", str(out_file)]) == 0
        assert float(_rows(capsys.readouterr().out)["relative_diff"]) <= 1e-4
        ops = [op["op_name"] for op in Interpreter(model_path=str(out_file))._get_ops_details()]
        counts[taps] = ops.count("DEPTHWISE_CONV_2D")
    assert counts == {None: 3 + 3 + 1 + 1 + 1, "0": 5, "49": 5}
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert f"default {export.DEPTHWISE_MAX_TAPS} = export.DEPTHWISE_MAX_TAPS" in " ".join(capsys.readouterr().out.split())


def test_export_writes_grouped_convs_dense_when_asked(capsys, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    def grouped_convs(path):  # CONV_2D ops whose filter sees fewer channels than their input has
        interpreter = Interpreter(model_path=str(path))
        shapes = {t["index"]: tuple(t["shape"]) for t in interpreter.get_tensor_details()}
        return sum(shapes[op["inputs"][1]][-1] < shapes[op["inputs"][0]][-1]
                   for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D")

    base = ["export", "resnext50_32x4d", "--tiny", "--input-size", "32"]
    counts = {}
    for limit in (None, "1000"):
        out_file = tmp_path / f"r{limit}.tflite"
        assert cli.main(base + (["--dense-group-channels", limit] if limit else []) + ["--out", str(out_file)]) == 0
        assert float(_rows(capsys.readouterr().out)["relative_diff"]) <= 1e-4
        counts[limit] = grouped_convs(out_file)
    spec = get_spec("resnext50_32x4d")
    model = create_model("resnext50_32x4d", input_shape=(32, 32, 3), **spec.test_overrides)
    assert counts[None] == sum(isinstance(layer, GroupConv2D) and layer.groups > 1 for layer in model.layers) > 0
    assert counts["1000"] == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "tflight"], "--format must be one of tflite, onnx, saved_model. Received: tflight"),
        (["--quantize", "int4"], "--quantize must be one of none, float16, dynamic, int8. Received: int4"),
        (["--format", "onnx", "--quantize", "int8"], "--quantize int8 applies to --format tflite only."),
        (["--quantize", "int8"], "--quantize int8 needs --calibration DIR"),
        (["--calibration", "random"], "--calibration is used with --quantize int8 only (use --verify-data DIR"),
        (["--quantize", "int8", "--calibration", "/no/such/dir"], "--calibration must be a folder"),
        (["--input-size", "32", "32", "32"], "--input-size needs 1 or 2"),
        (["--format", "onnx", "--depthwise-max-taps", "9"], "--depthwise-max-taps applies to --format tflite only"),
        (["--depthwise-max-taps", "-1"], "--depthwise-max-taps applies to --format tflite only and must be >= 0"),
        (["--format", "onnx", "--dense-group-channels", "8"], "--dense-group-channels applies to --format tflite"),
        (["--dense-group-channels", "0"], "--dense-group-channels applies to --format tflite only and must be >= 1"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(extra, message, capsys, tmp_path):
    out_file = tmp_path / "m.tflite"
    assert cli.main(BASE + extra + ["--out", str(out_file)]) == 2  # a repeated option: the last wins
    err = capsys.readouterr().err
    assert err.startswith(f"convzoo export: error: {message}") and err.count("\n") == 1, err
    assert not out_file.exists()


def test_missing_output_folder_and_unknown_model(capsys, tmp_path):
    assert cli.main(BASE + ["--out", str(tmp_path / "nope" / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convzoo export: error: --out: the folder {tmp_path / 'nope'} does not exist; create it first.") and err.count("\n") == 1
    assert cli.main(["export", "resnext9000", "--out", str(tmp_path / "m.tflite")]) == 2
    assert capsys.readouterr().err.startswith("convzoo export: error: Unknown model name: 'resnext9000'")


def _user_model_file(tmp_path):
    """A user's model as transfer learning saves it: 0-255 pixels in, scaling inside, a zoo backbone nested."""
    from keras_convzoo.backend import keras
    from keras_convzoo.testing import randomize_batch_norms

    backbone = create_model("mobilenetv2_035", include_top=False, pooling="avg", input_shape=(32, 32, 3),
                            **get_spec("mobilenetv2_035").test_overrides)
    randomize_batch_norms(backbone, seed=3)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(backbone(x, training=False))
    model = keras.Model(inputs, outputs, name="digits")
    path = tmp_path / "digits.keras"
    model.save(path)
    return model, path


def test_export_a_saved_keras_file_in_every_tflite_mode_and_onnx(capsys, tmp_path):
    model, path = _user_model_file(tmp_path)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")  # the model's own range
    expected = model.predict(images, verbose=0)
    for quantization, bound in (("none", 1e-4), ("float16", 1e-2), ("dynamic", 5e-2), ("int8", 0.1)):
        out_file = tmp_path / f"d_{quantization}.tflite"
        extra = ["--calibration", "random"] if quantization == "int8" else []
        assert cli.main(["export", str(path), "--quantize", quantization, "--out", str(out_file)] + extra) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"{path}, fused -> {out_file}"
        got = np.concatenate([export.run_tflite(str(out_file), images[i:i + 1])[0] for i in range(len(images))])
        assert np.abs(got - expected).max() <= bound, quantization
        assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.75, quantization
    assert cli.main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "d.onnx")]) == 0
    np.testing.assert_allclose(export.run_onnx(str(tmp_path / "d.onnx"), images)[0], expected, atol=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tiny"], "--tiny applies to registry names, not to a saved model file"),
        (["--classes", "3"], "--classes applies to registry names"),
        (["--input-size", "8", "9", "10"], "--input-size needs 1 or 2 positive sizes"),
    ],
)
def test_export_a_saved_keras_file_refuses_registry_options(capsys, tmp_path, argv, message):
    _, path = _user_model_file(tmp_path)
    assert cli.main(["export", str(path), "--out", str(tmp_path / "x.tflite")] + argv) == 2
    assert message in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "x.tflite")]) == 2
    assert "The model file does not exist" in capsys.readouterr().err
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert cli.main(["export", str(tmp_path / "broken.keras"), "--out", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err
    assert "Cannot load" in err and "broken.keras" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tflite").exists()


def test_registry_model_checked_on_a_folder_of_images_through_its_preprocessing(capsys, tmp_path):
    # The fused registry model keeps its name, so the folder's 0-255 PNGs go through
    # preprocess_input (MobileNetV2: "tf" scaling to -1..1) before they reach the file.
    from keras_convzoo.backend import tf

    rng = np.random.default_rng(0)
    for i in range(6):
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)  # resized to 32x32
        tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(image))
    out_file = tmp_path / "m.tflite"
    assert cli.main(BASE + ["--verify-data", str(tmp_path), "--out", str(out_file)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["verification_inputs"] == "6 samples of verification_data" and rows["real_inputs"] == "True"
    assert rows["num_samples"] == "6" and float(rows["relative_diff"]) <= 1e-4


def test_fused_model_keeps_its_registry_name():
    from keras_convzoo import deploy

    model = create_model("mobilenetv2_035", input_shape=(32, 32, 3), **get_spec("mobilenetv2_035").test_overrides)
    fused = deploy.fuse(model)
    assert fused.convzoo_name == "mobilenetv2_035" and fused.pretrained_cfg is model.pretrained_cfg
