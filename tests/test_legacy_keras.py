"""The layer, op and family tests again under tf_keras (TF_USE_LEGACY_KERAS=1), in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_convzoo.backend import LEGACY_KERAS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 8 minutes on 2 cores: CI runs it in the second step (pytest -m slow)
@pytest.mark.skipif(LEGACY_KERAS, reason="already running under tf_keras")
def test_suite_under_tf_keras():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    check = "from keras_convzoo.backend import KERAS_NAME, keras; print(KERAS_NAME, keras.__version__)"
    probe = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[0] == "tf_keras" and probe.stdout.split()[1].startswith("2.")
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile",
            "tests/layers", "tests/ops", "tests/blocks", "tests/export", "tests/deploy",
            "tests/applications/test_forward.py", "tests/applications/test_builder_errors.py",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
