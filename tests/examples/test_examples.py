"""Runs every example with --smoke in a subprocess and checks what it prints and writes.

Each smoke run takes 20-60 s on 2 CPU cores (mostly TensorFlow start-up and
tracing); the examples' full runs are documented in the README.
"""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
SCRIPTS = ("transfer_learning", "tflite_for_phones", "ccnn_any_resolution", "export_onnx")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name, *args, timeout=300):
    """Runs ``examples/<name>.py`` from the repository root; returns its stdout (fails on rc != 0)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    command = [sys.executable, os.path.join("examples", f"{name}.py"), *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    return result.stdout


def result_lines(stdout):
    """The ``RESULT key=value ...`` lines: a list of (label or None, {key: value})."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("RESULT "):
            continue
        label, fields = None, {}
        for token in line.split()[1:]:
            if "=" in token:
                key, value = token.split("=", 1)
                fields[key] = value
            else:
                label = token
        rows.append((label, fields))
    assert rows, f"no RESULT line in the output:\n{stdout[-3000:]}"
    return rows


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    module = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--smoke" in text and "--out" in text and "Usage" not in text.split("\n")[0]


def test_input_scaling_equals_preprocess_input():
    import keras_convzoo as kcz

    sys.path.insert(0, EXAMPLES)
    try:
        import _common
    finally:
        sys.path.remove(EXAMPLES)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for name in ("mobilenetv2_035", "convnext_tiny", "convnext_tiny.fb_in1k", "resnext50_32x4d", "ccnn_4_140"):
        layers = (kcz.preprocessing_layers(name) if name != "ccnn_4_140" else _common.input_scaling(name))
        got = np.asarray(_common.apply_layers(layers, x))
        expected = kcz.preprocess_input(x, name) if name != "ccnn_4_140" else x / 127.5 - 1
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert kcz.preprocessing_layers("convnext_tiny") == []  # keras' ConvNeXt weights: scaling inside the model
    with pytest.raises(ValueError, match="no ImageNet weights"):
        kcz.preprocessing_layers("ccnn_4_140")


def test_transfer_learning_strategies():
    # The scope the example builds and compiles under (a MirroredStrategy smoke run costs ~2x).
    module = load_example("transfer_learning")
    for name in ("default", "mirrored"):
        strategy = module.make_strategy(name)
        assert strategy.num_replicas_in_sync >= 1
        with strategy.scope():
            module.compile_model(module.keras.Sequential([module.keras.layers.Dense(2)]), 1e-3)


def test_transfer_learning_smoke(tmp_path):
    from keras_convzoo.backend import keras

    out = tmp_path / "tl"
    stdout = run_example("transfer_learning", "--smoke", "--out", str(out))
    (_, fields), = result_lines(stdout)
    for key in ("frozen_accuracy", "final_accuracy"):
        assert 0.0 <= float(fields[key]) <= 1.0
    assert "strategy: default" in stdout
    assert re.search(r"fine-tuning stage\d+", stdout), stdout
    model_path = out / "mobilenetv2_035_transfer.keras"
    assert is_png(out / "mobilenetv2_035_transfer_curves.png")
    import keras_convzoo  # noqa: F401  (registers the layers the saved model uses)

    model = keras.models.load_model(model_path)
    probs = model.predict(np.full((2, 32, 32, 3), 128.0, "float32"), verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_tflite_for_phones_smoke(tmp_path):
    out = tmp_path / "tflite"
    stdout = run_example("tflite_for_phones", "--smoke", "--out", str(out))
    rows = {label: fields for label, fields in result_lines(stdout)}
    assert set(rows) == {"keras", "float32", "float16", "dynamic", "int8"}
    for fields in rows.values():
        assert 0.0 <= float(fields["accuracy"]) <= 1.0
        assert float(fields["latency_ms"]) > 0
    # Minimum top-1 agreement with the Keras model on the 256 test digits.
    minimum = {"keras": 1.0, "float32": 0.99, "float16": 0.95, "dynamic": 0.85, "int8": 0.8}
    for label, bound in minimum.items():
        assert float(rows[label]["agreement"]) >= bound, (label, rows[label])
    assert float(rows["float32"]["snr_db"]) > 60
    assert float(rows["int8"]["snr_db"]) > 10
    sizes = {label: int(rows[label]["size_bytes"]) for label in rows}
    assert sizes["int8"] < sizes["float32"] and sizes["float16"] < sizes["float32"]
    for label in ("float32", "float16", "dynamic", "int8"):
        path = out / f"mobilenetv2_035_digits_{label}.tflite"
        assert path.stat().st_size == sizes[label]
    assert (out / "mobilenetv2_035_digits.keras").exists()


def test_ccnn_any_resolution_smoke(tmp_path):
    out = tmp_path / "ccnn"
    stdout = run_example("ccnn_any_resolution", "--smoke", "--out", str(out))
    accuracy = {(label, int(f["size"])): float(f["accuracy"]) for label, f in result_lines(stdout)}
    assert set(accuracy) == {("2d_continuous", 8), ("2d_continuous", 16), ("2d_fixed", 8), ("2d_fixed", 16),
                             ("1d_sequence", 64)}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    # At the training size both rules compute the same convolution.
    assert accuracy[("2d_continuous", 8)] == accuracy[("2d_fixed", 8)]
    assert "1D sequence (64 steps)" in stdout
    assert is_png(out / "ccnn_any_resolution.png")


def test_export_onnx_smoke(tmp_path):
    out = tmp_path / "onnx"
    stdout = run_example("export_onnx", "--smoke", "--out", str(out))
    (_, fields), = result_lines(stdout)
    assert int(fields["size"]) == 32
    assert float(fields["relative_diff"]) < 1e-4
    assert float(fields["top1_agreement"]) == 1.0
    assert float(fields["onnx_ms"]) > 0 and float(fields["keras_ms"]) > 0
    assert (out / "mobilenetv2_100.onnx").stat().st_size > 0
