import subprocess
import sys

import pytest

from keras_convzoo import cli


def test_list(capsys):
    assert cli.main(["list", "seresnext*"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["seresnext101_32x4d", "seresnext50_32x4d"] and "SEResNeXt50" in out


def test_info_reports_exact_counts(capsys):
    assert cli.main(["info", "mobilenetv2_100"]) == 0
    out = capsys.readouterr().out
    assert "3,504,872" in out and "3,538,984" in out and "matches reference     True" in out


def test_errors_are_one_line(capsys):
    assert cli.main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convzoo info: error: Unknown model name") and err.count("\n") == 1


def test_console_entry_module_runs():
    result = subprocess.run([sys.executable, "-m", "keras_convzoo.cli", "list", "mobilenetv2_1*"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "mobilenetv2_140" in result.stdout


def test_info_compares_ccnn_with_the_reference_model_it_counted(capsys):
    # The official CCNN count is for 10 classes at 32x32; the default build has 1000 classes.
    from keras_convzoo.applications import get_spec

    assert cli.main(["info", "ccnn_4_140"]) == 0
    out = capsys.readouterr().out
    reference = get_spec("ccnn_4_140").reference_params
    assert f"{reference:,}" in out
    assert "matches reference     True (counted with classes=10, input_shape=(32, 32, 3))" in out


def test_parser_errors_are_one_line_with_the_closest_option(capsys, monkeypatch):
    import pytest

    argv = ["export", "m.keras", "--quantise", "int8", "--out", "m.tflite"]
    monkeypatch.setattr(sys, "argv", ["convzoo"] + argv)
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err == ("convzoo: error: unrecognized arguments: --quantise int8 (did you mean --quantize?); "
                   "see convzoo --help\n")


def test_debug_is_accepted_after_the_command(capsys):
    import pytest

    with pytest.raises(ValueError, match="Unknown model name"):  # --debug: the exception itself
        cli.main(["info", "nope", "--debug"])


_LIGHT = """
import sys, time
import keras_convzoo_cli
start = time.perf_counter()
codes = [keras_convzoo_cli.main(["list"]), keras_convzoo_cli.main(["info", "resnext50_32x4d"])]
print("codes", codes)
print("tensorflow imported", "tensorflow" in sys.modules, "keras_convzoo imported", "keras_convzoo" in sys.modules)
"""


def test_list_and_info_answer_without_importing_tensorflow():
    result = subprocess.run([sys.executable, "-c", _LIGHT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "codes [0, 0]" in result.stdout
    assert "tensorflow imported False keras_convzoo imported False" in result.stdout
    assert "25,028,904" in result.stdout  # timm's resnext50_32x4d trainable count, from the index
    assert result.stderr == ""


def test_help_does_not_import_tensorflow():
    code = "import sys, keras_convzoo_cli\ntry:\n    keras_convzoo_cli.main(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('tensorflow imported', 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "export" in result.stdout and "tensorflow imported False" in result.stdout


_ABSL_LINE = r"^(?:[IWEF]\d{4} |WARNING: All log messages before absl)"


def _run_cli(*argv):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "keras_convzoo_cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env)


def test_commands_that_import_tensorflow_keep_its_cpp_logs_off_stderr_unless_debug():
    import re

    quiet = _run_cli("info", "mobilenetv2_035", "--input-size", "32")
    assert quiet.returncode == 0 and "MACs" in quiet.stdout
    assert quiet.stderr == ""
    loud = _run_cli("info", "mobilenetv2_035", "--input-size", "32", "--debug")
    assert loud.returncode == 0
    assert re.search(_ABSL_LINE, loud.stderr, re.M), loud.stderr[-2000:]  # TensorFlow's own start-up lines


def test_quiet_logs_replays_what_it_caught_when_the_block_fails(capfd):
    import os

    from keras_convzoo_cli import quiet_native_logs

    with pytest.raises(RuntimeError, match="boom"):
        with quiet_native_logs():
            os.write(2, b"native line before the failure\n")
            raise RuntimeError("boom")
    assert capfd.readouterr().err == "native line before the failure\n"
    with quiet_native_logs():
        os.write(2, b"hidden\n")
    assert capfd.readouterr().err == ""


_EARLY = """
import sys
import keras_convzoo_cli
code = keras_convzoo_cli.main(sys.argv[1:])
print("code", code, "tensorflow imported", "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("argv, message", [
    (["info", "resnet50_32x4d"], "convzoo info: error: Unknown model name: 'resnet50_32x4d'; did you mean "
                                 "'resnext50_32x4d'"),
    (["export", "mobilenet_v2_100", "--out", "m.tflite"], "did you mean 'mobilenetv2_100'"),
    (["benchmark", "mobilenetv2_100", "convnext_tiniest"], "Unknown model name: 'convnext_tiniest'"),
    (["export", "mobilenetv2_100", "--format", "tflit", "--out", "m.tflite"],
     "convzoo export: error: --format must be one of tflite, onnx, saved_model. Received: tflit"),
    (["export", "mobilenetv2_100", "--quantize", "int8", "--out", "m.tflite"],
     "--quantize int8 needs --calibration DIR"),
    (["export", "mobilenetv2_100", "--out", "/nonexistent-folder/m.tflite"],
     "--out: the folder /nonexistent-folder does not exist"),
    (["export", "mobilenetv2_100", "--quantize", "int8", "--calibration", "/nonexistent-folder", "--out", "m.tflite"],
     "--calibration must be a folder of images or 'random'. Received: /nonexistent-folder"),
    (["export", "/nonexistent-folder/m.keras", "--out", "m.tflite"],
     "The model file does not exist. Received: /nonexistent-folder/m.keras"),
])
def test_usage_errors_are_found_before_tensorflow_loads(argv, message):
    result = subprocess.run([sys.executable, "-c", _EARLY, *argv], capture_output=True, text=True, timeout=120)
    assert "code 2 tensorflow imported False" in result.stdout, result.stdout + result.stderr[-2000:]
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_export_shows_no_native_log_lines(tmp_path):
    quiet = _run_cli("export", "mobilenetv2_035", "--tiny", "--weights", "none", "--input-size", "32",  # as the examples
                     "--out", str(tmp_path / "m.tflite"))
    assert quiet.returncode == 0 and "relative_diff" in quiet.stdout, quiet.stderr[-2000:]
    assert quiet.stderr == ""  # no TensorFlow start-up lines, no LiteRT "Created ... XNNPACK delegate" line


def test_a_rejected_file_is_explained_in_command_line_terms(tmp_path, capsys):
    # Random weights: int8 rounds the near-uniform softmax to zeros, so the (synthetic-input) check fails.
    argv = ["export", "mobilenetv2_035", "--tiny", "--input-size", "32", "--quantize", "int8", "--calibration",
            "random", "--out", str(tmp_path / "m.tflite")]
    assert cli.main(argv) == 2
    progress, err = capsys.readouterr().err.splitlines()  # the calibration bar's finished line, the error
    assert progress.startswith("calibration [") and err.startswith("convzoo export: error: The exported tflite")
    assert "does not reproduce the Keras model: snr_db=" in err
    assert "--verify-data none skips this check" in err and "(--keep-failed keeps it)" in err
    assert "--quantize dynamic" in err and "--quantize float16" in err
    assert "verify=False" not in err and "keep_failed" not in err and "representative_data" not in err
    assert "top1_agreement >= " not in err  # random calibration: the inputs are synthetic, agreement is not judged
    assert list(tmp_path.iterdir()) == []
    assert cli.main(argv + ["--keep-failed"]) == 2
    assert "the rejected file is kept at" in capsys.readouterr().err and len(list(tmp_path.iterdir())) == 1
