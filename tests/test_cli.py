import subprocess
import sys

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
