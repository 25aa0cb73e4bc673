"""Runs every example with --smoke in a subprocess and checks what it prints and writes.

Also checks that an example reruns identically with the same seed, and the
logic of ``tools/run_examples.py`` (which writes the example tables of the
docs guides from the examples' RESULT lines) on made-up lines. The examples'
full runs are in the guides (``docs/guides/*.md``).
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
RUN_EXAMPLES = os.path.join(REPO, "tools", "run_examples.py")
SCRIPTS = ("transfer_learning", "tflite_for_phones", "ccnn_any_resolution", "export_onnx")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name, *args, timeout=300, env=None):
    """Runs ``examples/<name>.py`` from the repository root; returns its stdout (fails on rc != 0)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **(env or {}))
    command = [sys.executable, os.path.join("examples", f"{name}.py"), *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    return result.stdout


def result_lines(stdout):
    """The ``RESULT key=value ...`` lines: a list of (label or None, {key: value}) (``tools/run_examples.py``'s parser)."""
    rows = load_module("run_examples_tool", RUN_EXAMPLES).parse_results(stdout)
    assert rows, f"no RESULT line in the output:\n{stdout[-3000:]}"
    return rows


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name):
    return load_module(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))


@pytest.fixture(scope="module")
def tool():
    """``tools/run_examples.py`` as a module."""
    return load_module("run_examples_tool", RUN_EXAMPLES)


def rendered(tool, name, stdout):
    """The docs block of example ``name`` rendered from the RESULT lines of ``stdout``."""
    meta = {"software": "TensorFlow x, Keras y", "machine": "test machine"}
    return tool.render_block(tool.EXAMPLES[name], tool.result_lines(stdout), meta)


def smoke_test_digits():
    """The held-out digits the examples' ``--smoke`` runs report on: 256 images, 32x32 RGB, seed 0."""
    from keras_convzoo.testing.digits import load_digits_images

    _, _, x_test, y_test = load_digits_images(32, 3, seed=0, limit=256)
    return x_test, y_test


def cross_entropy(probabilities, labels):
    picked = np.asarray(probabilities, "float64")[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def assert_count_of(accuracy, images):
    """A printed 4-decimal accuracy is a whole number of correct images out of ``images``."""
    count = round(accuracy * images)
    assert abs(accuracy - count / images) <= 5e-5, (accuracy, images)
    return count


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


def test_transfer_learning_smoke(tmp_path, tool):
    from keras_convzoo.backend import keras

    out = tmp_path / "tl"
    stdout = run_example("transfer_learning", "--smoke", "--out", str(out))
    (_, fields), = result_lines(stdout)
    assert int(fields["val_images"]) == 256 and float(fields["frozen_loss"]) > 0
    # The smoke run (tiny twin, random init, a few steps) is at chance level, so no margin above chance holds;
    # the frozen-phase accuracy is pinned to its seeded value (26 of 256; 2 images of slack for other CPUs).
    assert abs(assert_count_of(float(fields["frozen_accuracy"]), 256) - 26) <= 2, fields
    assert "| test accuracy (256 digits) | frozen backbone | after fine-tuning `stage7` |" in rendered(
        tool, "transfer_learning", stdout)
    assert "strategy: default" in stdout
    assert re.search(r"fine-tuning stage\d+", stdout), stdout
    model_path = out / "mobilenetv2_035_transfer.keras"
    assert is_png(out / "mobilenetv2_035_transfer_curves.png")
    import keras_convzoo  # noqa: F401  (registers the layers the saved model uses)

    model = keras.models.load_model(model_path)
    probs = model.predict(np.full((2, 32, 32, 3), 128.0, "float32"), verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # The printed final accuracy and loss are those of the saved model on the 256 held-out digits.
    x_test, y_test = smoke_test_digits()
    probs = model.predict(x_test, verbose=0)
    assert_count_of(float(fields["final_accuracy"]), 256)
    assert abs(float(fields["final_accuracy"]) - float(np.mean(probs.argmax(-1) == y_test))) <= 5e-5, fields
    assert abs(float(fields["final_loss"]) - cross_entropy(probs, y_test)) <= 1e-4, fields


def test_tflite_for_phones_smoke(tmp_path, tool):
    out = tmp_path / "tflite"
    stdout = run_example("tflite_for_phones", "--smoke", "--out", str(out))
    rows = {label: fields for label, fields in result_lines(stdout)}
    assert set(rows) == {"keras", "float32", "float16", "dynamic", "int8"}
    # Each printed accuracy, agreement and loss is that of the written file (or the saved Keras model) on the
    # 256 held-out digits, recomputed here (the smoke run is at chance level: no margin above chance holds).
    from keras_convzoo import export
    from keras_convzoo.backend import keras

    x_test, y_test = smoke_test_digits()
    keras_probs = keras.models.load_model(out / "mobilenetv2_035_digits.keras").predict(x_test, batch_size=128,
                                                                                         verbose=0)
    for label, fields in rows.items():
        assert int(fields["test_images"]) == 256 and float(fields["latency_ms"]) > 0
        probs = keras_probs if label == "keras" else export.run_tflite(
            out / f"mobilenetv2_035_digits_{label}.tflite", x_test, num_threads=int(fields["threads"]))[0]
        accuracy, agreement = float(fields["accuracy"]), float(fields["agreement"])
        assert_count_of(accuracy, 256)
        assert abs(accuracy - float(np.mean(probs.argmax(-1) == y_test))) <= 5e-5, (label, fields)
        assert abs(agreement - float(np.mean(probs.argmax(-1) == keras_probs.argmax(-1)))) <= 5e-5, (label, fields)
        assert abs(float(fields["loss"]) - cross_entropy(probs, y_test)) <= 1e-4, (label, fields)
    # Minimum top-1 agreement with the Keras model on the 256 test digits.
    minimum = {"keras": 1.0, "float32": 0.99, "float16": 0.95, "dynamic": 0.85, "int8": 0.8}
    for label, bound in minimum.items():
        assert float(rows[label]["agreement"]) >= bound, (label, rows[label])
    assert float(rows["float32"]["snr_db"]) > 60
    assert rows["keras"]["check"] == "-" and rows["float32"]["check"] == "passed"
    assert float(rows["int8"]["snr_db"]) > 10
    sizes = {label: int(rows[label]["size_bytes"]) for label in rows}
    assert sizes["int8"] < sizes["float32"] and sizes["float16"] < sizes["float32"]
    for label in ("float32", "float16", "dynamic", "int8"):
        path = out / f"mobilenetv2_035_digits_{label}.tflite"
        assert path.stat().st_size == sizes[label]
    assert (out / "mobilenetv2_035_digits.keras").exists()
    saved = keras.models.load_model(out / "mobilenetv2_035_digits.keras")
    norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in export.lowering.iter_layers(saved))
    assert norms > 0 and f"fused: {norms} -> 0 BatchNormalization layers" in stdout  # counted in the nested backbone
    block = rendered(tool, "tflite_for_phones", stdout)
    assert "| model (256 test digits) |" in block and "| TFLite int8 |" in block
    assert f"| {float(rows['int8']['accuracy']):.3f} |" in block


@pytest.fixture(scope="module")
def ccnn_smoke(tmp_path_factory):
    """``(stdout, out folder)`` of ``ccnn_any_resolution.py --smoke --seed 0`` (shared by two tests)."""
    out = tmp_path_factory.mktemp("ccnn")
    stdout = run_example("ccnn_any_resolution", "--smoke", "--seed", "0", "--out", str(out),
                         env={"PYTHONHASHSEED": "1"})
    return stdout, out


def test_ccnn_any_resolution_smoke(ccnn_smoke, tool):
    stdout, out = ccnn_smoke
    accuracy = {(label, int(f["size"])): float(f["accuracy"]) for label, f in result_lines(stdout)}
    assert set(accuracy) == {("2d_continuous", 8), ("2d_continuous", 16), ("2d_fixed", 8), ("2d_fixed", 16),
                             ("1d_sequence", 64)}
    # The smoke run (1 epoch on 256 digits) is at chance level, so no margin above chance holds: the accuracies
    # are pinned to their seeded values (correct digits of 397; 2 digits of slack for other CPUs).
    counts = {key: assert_count_of(value, 397) for key, value in accuracy.items()}
    expected = {("2d_continuous", 8): 43, ("2d_continuous", 16): 43, ("2d_fixed", 8): 43, ("2d_fixed", 16): 43,
                ("1d_sequence", 64): 57}
    assert all(abs(counts[key] - expected[key]) <= 2 for key in expected), (counts, expected)
    # At the training size both rules compute the same convolution.
    assert accuracy[("2d_continuous", 8)] == accuracy[("2d_fixed", 8)]
    assert "1D sequence (64 steps)" in stdout
    assert is_png(out / "ccnn_any_resolution.png")
    block = rendered(tool, "ccnn_any_resolution", stdout)
    assert "| test accuracy (397 digits) | 8x8 | 16x16 |" in block
    assert f"| 1D, 64-step sequence | {accuracy[('1d_sequence', 64)]:.3f} |  |" in block


def without_latency(stdout):
    """The RESULT lines with their machine-dependent timings removed."""
    return [re.sub(r" \S*(latency|_ms)\S*=\S+", "", line) for line in stdout.splitlines() if line.startswith("RESULT ")]


def test_example_reruns_identically(ccnn_smoke, tmp_path):
    # ccnn_any_resolution: the quickest example that trains (two models; init, shuffling, training).
    # Each RESULT line carries the test loss to 6 decimals: equal lines mean equal trained weights.
    # Another PYTHONHASHSEED: no set or str-keyed hash order may change what is built or trained.
    first, _ = ccnn_smoke
    again = run_example("ccnn_any_resolution", "--smoke", "--seed", "0", "--out", str(tmp_path / "again"),
                        env={"PYTHONHASHSEED": "2"})
    assert without_latency(again) == without_latency(first)
    assert all("loss=" in line for line in without_latency(first))
    # The lines do tell trained models apart: another seed gives other losses.
    other = run_example("ccnn_any_resolution", "--smoke", "--seed", "1", "--out", str(tmp_path / "other"))
    losses = [[f["loss"] for _, f in result_lines(stdout)] for stdout in (first, other)]
    assert all(a != b for a, b in zip(*losses)), losses


def test_export_onnx_smoke(tmp_path, tool):
    out = tmp_path / "onnx"
    stdout = run_example("export_onnx", "--smoke", "--out", str(out))
    (_, fields), = result_lines(stdout)
    assert int(fields["size"]) == 32
    assert float(fields["relative_diff"]) < 1e-4
    assert float(fields["top1_agreement"]) == 1.0
    assert float(fields["onnx_ms"]) > 0 and float(fields["keras_ms"]) > 0
    assert (out / "mobilenetv2_100.onnx").stat().st_size == int(fields["file_bytes"])
    assert "| 32x32 |" in rendered(tool, "export_onnx", stdout)


# tools/run_examples.py on made-up RESULT lines (no example runs).

TFLITE_STDOUT = """training...
RESULT keras size_bytes=1690000 check=- latency_ms=5.2000 agreement=1.0000 accuracy=0.7911 snr_db=inf \
loss=0.600000 test_images=450 latency_runs=200 threads=2
RESULT float32 size_bytes=1650000 check=passed latency_ms=0.3900 agreement=1.0000 accuracy=0.7911 snr_db=130.0 \
loss=0.600000 test_images=450 latency_runs=200 threads=2
RESULT int8 size_bytes=640000 check=passed latency_ms=0.4000 agreement=0.7580 accuracy=0.7620 snr_db=14.0 \
loss=0.700000 test_images=450 latency_runs=200 threads=2
"""


def moved(stdout, label, key, value):
    """``stdout`` with ``key`` of the row ``label`` set to ``value``."""
    lines = []
    for line in stdout.splitlines():
        if line.startswith(f"RESULT {label} "):
            line = re.sub(rf"\b{key}=\S+", f"{key}={value}", line)
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture
def page(tmp_path, tool):
    """A Markdown page holding the tflite_for_phones block rendered from TFLITE_STDOUT."""
    path = tmp_path / "page.md"
    block = rendered(tool, "tflite_for_phones", TFLITE_STDOUT)
    path.write_text(f"# title\n\ntext before\n\n{block}\n\ntext after\n")
    return path


def test_run_examples_block_round_trip(tool, page):
    text = page.read_text()
    lines, meta = tool.read_block(text, "tflite_for_phones")
    assert lines == tool.result_lines(TFLITE_STDOUT) and meta["machine"] == "test machine"
    assert "| TFLite int8 | 625 KiB | 0.40 | 0.758 | 0.762 | 14.0 | passed |" in text
    assert "| model (450 test digits) |" in text and "median of 200 runs (LiteRT with 2 threads" in text
    assert text.startswith("# title\n\ntext before\n\n<!-- example table: tflite_for_phones begin -->")
    assert text.endswith("<!-- example table: tflite_for_phones end -->\n\ntext after\n")
    # Rewriting the block with other lines replaces it and keeps the rest.
    new = tool.write_block(text, tool.EXAMPLES["tflite_for_phones"],
                           tool.result_lines(moved(TFLITE_STDOUT, "int8", "accuracy", "0.5000")), meta)
    assert "| 0.500 |" in new and "| 0.762 |" not in new and new.count("begin -->") == 1
    assert new.endswith("end -->\n\ntext after\n")


def test_run_examples_check_without_run(tool, page):
    assert tool.main(["--check", "--no-run", "tflite_for_phones", "--file", str(page)]) == 0
    page.write_text(page.read_text().replace("| 0.762 |", "| 0.802 |"))  # a hand edit
    assert tool.main(["--check", "--no-run", "tflite_for_phones", "--file", str(page)]) == 1


def test_run_examples_missing_markers(tool, tmp_path):
    path = tmp_path / "page.md"
    path.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no '<!-- example table: ccnn_any_resolution begin -->'"):
        tool.main(["--check", "--no-run", "ccnn_any_resolution", "--file", str(path)])


@pytest.mark.parametrize(
    "label, key, value, ok",
    [
        ("int8", "accuracy", "0.7700", True),  # 0.8 point
        ("int8", "accuracy", "0.7500", False),  # 1.2 points
        ("int8", "agreement", "0.7300", False),
        ("keras", "latency_ms", "50.0000", True),  # latency: machine-dependent, not compared
        ("float32", "size_bytes", "1", True),
        ("int8", "snr_db", "3.0", True),
    ],
)
def test_run_examples_check_rerun(tool, page, monkeypatch, label, key, value, ok):
    rerun = moved(TFLITE_STDOUT, label, key, value)
    monkeypatch.setattr(tool, "run_example", lambda example, out_dir, timeout: rerun)
    before = page.read_text()
    assert tool.main(["--check", "tflite_for_phones", "--file", str(page)]) == (0 if ok else 1)
    assert page.read_text() == before  # --check never writes


def test_run_examples_check_missing_row(tool, page, monkeypatch):
    rerun = "\n".join(line for line in TFLITE_STDOUT.splitlines() if not line.startswith("RESULT int8"))
    monkeypatch.setattr(tool, "run_example", lambda example, out_dir, timeout: rerun)
    assert tool.main(["--check", "tflite_for_phones", "--file", str(page)]) == 1


def test_run_examples_failed_run(tool, page, monkeypatch):
    def fail(example, out_dir, timeout):
        raise RuntimeError("python examples/tflite_for_phones.py exited with 1: ValueError: boom")

    monkeypatch.setattr(tool, "run_example", fail)
    before = page.read_text()
    assert tool.main(["tflite_for_phones", "--file", str(page)]) == 1
    assert page.read_text() == before


def test_run_examples_writes_table(tool, page, monkeypatch):
    rerun = moved(TFLITE_STDOUT, "int8", "accuracy", "0.5000")
    monkeypatch.setattr(tool, "run_example", lambda example, out_dir, timeout: rerun)
    assert tool.main(["tflite_for_phones", "--file", str(page), "--machine", "(test)"]) == 0
    text = page.read_text()
    assert "| 0.500 |" in text and "(test)" in text
    lines, _ = tool.read_block(text, "tflite_for_phones")
    assert lines == tool.result_lines(rerun)
    assert tool.main(["--check", "--no-run", "tflite_for_phones", "--file", str(page)]) == 0


def test_run_examples_ccnn_and_onnx_tables(tool):
    ccnn = "\n".join(
        [f"RESULT 2d_{rule} size={s} accuracy={a:.4f} loss=0.5 test_digits=397"
         for rule, accs in (("continuous", (0.93, 0.78, 0.77)), ("fixed", (0.93, 0.27, 0.12)))
         for s, a in zip((8, 16, 32), accs)]
        + ["RESULT 1d_sequence size=64 accuracy=0.9220 loss=0.3 test_digits=397"])
    block = rendered(tool, "ccnn_any_resolution", ccnn)
    assert "| test accuracy (397 digits) | 8x8 | 16x16 | 32x32 |" in block
    assert '| 2D, `resolution="fixed"` (reference rule) | 0.930 | 0.270 | 0.120 |' in block
    assert "| 1D, 64-step sequence | 0.922 |  |  |" in block
    onnx = ("RESULT size=224 photos=6 max_abs_diff=1.800e-07 relative_diff=4.400e-07 top1_agreement=1.0000 "
            "onnx_ms=10.300 keras_ms=22.900 file_bytes=13914035 latency_runs=50")
    expected = "| 224x224 | 6 | 13.27 MiB | 1.8e-07 | 4.4e-07 | 1.000 | 10.3 | 22.9 |"
    assert expected in rendered(tool, "export_onnx", onnx)
    # ccnn rows share labels: they are told apart by size.
    rerun = ccnn.replace("size=32 accuracy=0.1200", "size=32 accuracy=0.2000")
    report, failures = tool.compare(tool.EXAMPLES["ccnn_any_resolution"], tool.result_lines(ccnn),
                                    tool.result_lines(rerun), 0.01)
    assert len(report) == 7 and len(failures) == 1 and "2d_fixed size=32 accuracy" in failures[0]


def test_docs_example_tables_match_their_results(tool):
    # The guides' tables are written by tools/run_examples.py: each equals the rendering of its stored RESULT lines.
    for example in tool.EXAMPLES.values():
        assert os.path.isfile(os.path.join(REPO, example.page)), example.page
    assert tool.main(["--check", "--no-run"]) == 0
