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
