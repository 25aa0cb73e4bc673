"""``convzoo info`` MACs and ``convzoo benchmark`` (table, CSV, plot), run in-process."""

import csv
import platform

import pytest

from keras_convzoo import cli, profile
from keras_convzoo.applications import create_model
from keras_convzoo.profile import count_flops


def _rows(out):
    return {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in out.splitlines() if "  " in line}


def test_info_prints_macs_at_the_default_and_a_given_size(capsys):
    assert cli.main(["info", "mobilenetv2_100"]) == 0
    assert _rows(capsys.readouterr().out)["MACs"] == "300.77M at 224x224 (300,774,272)"
    assert cli.main(["info", "mobilenetv2_100", "--input-size", "160", "128"]) == 0
    out = capsys.readouterr().out
    expected = count_flops(create_model("mobilenetv2_100", input_shape=(160, 128, 3))).total
    assert _rows(out)["MACs"].endswith(f"at 160x128 ({expected:,})") and expected < 300_774_272
    assert "matches reference     True" in out


def test_info_rejects_a_bad_input_size(capsys):
    assert cli.main(["info", "mobilenetv2_100", "--input-size", "64", "64", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convzoo info: error: --input-size needs 1 or 2") and err.count("\n") == 1


def test_benchmark_table_csv_and_plot(capsys, tmp_path):
    csv_path, png_path = tmp_path / "rows.csv", tmp_path / "plot.png"
    argv = ["benchmark", "mobilenetv2_035", "resnext50_32x4d", "--tiny", "--input-size", "32", "--batch-sizes", "1",
            "2", "--modes", "graph", "tflite", "--warmup", "1", "--repeats", "2", "--csv", str(csv_path),
            "--plot", str(png_path)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["model", "mode", "batch", "median"]
    table = [line.split() for line in lines[1:] if line.split()[0] in ("mobilenetv2_035", "resnext50_32x4d")]
    assert [(t[0], t[1], t[2]) for t in table] == [
        (m, mode, b) for m in ("mobilenetv2_035", "resnext50_32x4d") for mode in ("graph", "tflite") for b in "12"
    ]
    assert all(float(t[3]) > 0 for t in table)
    assert lines[-2:] == [f"wrote {csv_path}", f"wrote {png_path}"]
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["mode"], r["batch_size"]) for r in rows] == [(t[0], t[1], t[2]) for t in table]
    assert all(float(r["median_ms"]) > 0 and r["input_shape"] == "32x32x3" and r["error"] == "" for r in rows)
    assert {r["model"]: int(r["macs"]) for r in rows}["resnext50_32x4d"] > 0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


def test_benchmark_errors_are_one_line(capsys, tmp_path):
    assert cli.main(["benchmark", "mobilenetv2_035", "--modes", "turbo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convzoo benchmark: error: `modes` must be") and err.count("\n") == 1
    assert cli.main(["benchmark", "nope"]) == 2
    assert "Unknown model name" in capsys.readouterr().err
    assert cli.main(["benchmark", "mobilenetv2_035", "--plot", str(tmp_path / "plot.jpg")]) == 2
    assert "--plot must name a .png file" in capsys.readouterr().err


def test_benchmark_rounds_times_the_models_together_and_prints_ratios(capsys):
    argv = ["benchmark", "mobilenetv2_035", "mobilenetv2_050", "--tiny", "--input-size", "32", "--batch-sizes", "1",
            "--modes", "graph", "tflite", "--warmup", "1", "--repeats", "4", "--rounds", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    table, ratios = out.split("ratio to mobilenetv2_035 (timed in 2 alternating rounds)")
    timed = {(t[0], t[1]): float(t[3]) for t in (line.split() for line in table.splitlines())
             if t and t[0].startswith("mobilenetv2_0")}
    assert set(timed) == {(m, mode) for m in ("mobilenetv2_035", "mobilenetv2_050") for mode in ("graph", "tflite")}
    printed = {t[1]: float(t[3]) for t in (line.split() for line in ratios.splitlines()) if t}
    for mode in ("graph", "tflite"):  # the table rounds to 0.01 ms, the ratio to 0.01
        first, second = timed[("mobilenetv2_035", mode)], timed[("mobilenetv2_050", mode)]
        low, high = (second - 0.005) / (first + 0.005), (second + 0.005) / (first - 0.005)
        assert low - 0.005 <= printed[mode] <= high + 0.005, (mode, printed[mode], first, second)
    assert cli.main(["benchmark", "mobilenetv2_035", "--rounds", "2"]) == 2
    assert "--rounds compares two or more models" in capsys.readouterr().err


def test_benchmark_passes_tflite_lowerings_and_rejects_them_without_a_tflite_mode(capsys, monkeypatch):
    from keras_convzoo import export

    real, asked = export.to_tflite, []

    def to_tflite(model, path, **kwargs):
        asked.append({k: kwargs.get(k) for k in ("dense_group_channels", "depthwise_max_taps")})
        return real(model, path, **kwargs)

    monkeypatch.setattr(export, "to_tflite", to_tflite)
    argv = ["benchmark", "resnext50_32x4d", "--tiny", "--input-size", "32", "--batch-sizes", "1", "--modes",
            "tflite", "--warmup", "0", "--repeats", "1", "--dense-group-channels", "8", "--depthwise-max-taps", "0"]
    assert cli.main(argv) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("resnext50_32x4d")]
    assert len(table) == 1 and float(table[0][3]) > 0
    assert asked == [{"dense_group_channels": 8, "depthwise_max_taps": None}]
    where = "applies to --modes tflite/tflite_int8"
    for extra, text in (
        (["--modes", "graph", "--dense-group-channels", "8"], f"--dense-group-channels {where}"),
        (["--dense-group-channels", "0"], f"--dense-group-channels {where} only and must be >= 1"),
        (["--depthwise-max-taps", "-1"], f"--depthwise-max-taps {where} only and must be >= 0"),
    ):
        assert cli.main(["benchmark", "mobilenetv2_035"] + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("convzoo benchmark: error: " + text) and err.count("\n") == 1


def test_benchmark_train_times_a_training_step_and_rejects_inference_flags(capsys, tmp_path):
    out_csv = tmp_path / "train.csv"
    assert cli.main(["benchmark", "mobilenetv2_035", "--train", "--tiny", "--input-size", "32", "--batch-sizes", "2",
                     "--warmup", "1", "--repeats", "2", "--csv", str(out_csv)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:3] == ["mobilenetv2_035", "train_sgd", "2"]
    onednn_note = "note: TensorFlow's oneDNN CPU kernels are off"
    assert (onednn_note in table[-1]) == (profile.onednn_enabled() is False and platform.machine() == "x86_64")
    with open(out_csv) as f:
        (row,) = list(csv.DictReader(f))
    assert row["mode"] == "train_sgd" and row["error"] == "" and float(row["median_ms"]) > 0
    assert cli.main(["benchmark", "mobilenetv2_035", "--train", "--fuse"]) == 2
    assert "--fuse applies to inference benchmarks" in capsys.readouterr().err
    assert cli.main(["benchmark", "mobilenetv2_035", "--precision", "mixed_bfloat16"]) == 2
    assert "--precision applies to --train only" in capsys.readouterr().err


@pytest.mark.parametrize("enabled", [True, False])
def test_benchmark_train_names_the_onednn_switch_only_where_it_is_off(enabled, capsys, monkeypatch):
    """On x86 CPUs without AVX-512 VNNI/AMX TensorFlow leaves oneDNN off; the training benchmark says how to turn it on."""
    monkeypatch.setattr(profile, "onednn_enabled", lambda: enabled)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert cli.main(["benchmark", "mobilenetv2_035", "--train", "--tiny", "--input-size", "32", "--batch-sizes", "2",
                     "--warmup", "0", "--repeats", "1"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("note: TensorFlow's oneDNN CPU kernels are off") != enabled
    assert ("TF_ENABLE_ONEDNN_OPTS=1" in last) != enabled
