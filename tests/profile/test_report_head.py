"""The tools' report heads name whether TensorFlow ran its oneDNN kernels (it decides per CPU and environment)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = (
    "import sys; sys.path.insert(0, 'tools'); import benchmark_training as b; "
    "from tensorflow.python.util import _pywrap_util_port as p; "
    "print(b.report_head('t', 'x.py', [], 2, None)[-1]); print('mkl', p.IsMklEnabled())"
)


@pytest.mark.parametrize("setting, state", [("1", "on"), ("0", "off")])
def test_report_head_names_the_onednn_state_tensorflow_runs_with(setting, state):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    head, mkl = result.stdout.strip().splitlines()[-2:]
    assert head.startswith("- TensorFlow ") and f" (oneDNN {state}), Keras " in head
    assert mkl == f"mkl {state == 'on'}"  # TensorFlow's own answer agrees with the report
