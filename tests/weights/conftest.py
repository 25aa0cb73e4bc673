"""Runs the timm side of the parity tests in a subprocess (torch never loads next to TensorFlow)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: A Python with torch + timm, when not the current one (CI installs them in the same venv).
TORCH_PYTHON_ENV = "KERAS_CONVZOO_TORCH_PYTHON"
LOCAL_TORCH_PYTHON = "/work/venv-torch/bin/python"
SCRIPT = Path(__file__).with_name("timm_reference.py")


def torch_python():
    """The interpreter that runs ``timm_reference.py``; fails (never skips) when there is none."""
    configured = os.environ.get(TORCH_PYTHON_ENV)
    if configured:
        return configured
    if importlib.util.find_spec("torch") and importlib.util.find_spec("timm"):
        return sys.executable
    if os.path.exists(LOCAL_TORCH_PYTHON):
        return LOCAL_TORCH_PYTHON
    pytest.fail(
        "The timm parity tests need torch, torchvision and timm: pip install -e '.[torch]' "
        f"(torch==2.14.1 torchvision==0.29.1 timm), or set {TORCH_PYTHON_ENV} to a Python that has them."
    )


def run_torch_script(script, out_dir, timeout=600):
    """Runs ``script`` (Python source) with the torch interpreter and ``out_dir`` as its argument; asserts it worked."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run([torch_python(), "-c", script, str(out_dir)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return Path(out_dir)


def make_references(out_dir, cases):
    """Writes ``<id>.safetensors`` and ``<id>.npz`` for each case (see ``timm_reference.py``)."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run(
        [torch_python(), str(SCRIPT), str(out_dir), json.dumps(cases)],
        capture_output=True, text=True, timeout=1800, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return Path(out_dir)


@pytest.fixture(scope="session")
def timm_references(tmp_path_factory):
    """``make(cases) -> directory``: creates the references not made yet in this session, in one subprocess."""
    root = tmp_path_factory.mktemp("timm_references")

    def make(cases):
        missing = [case for case in cases if not (root / f"{case['id']}.npz").exists()]
        if missing:
            make_references(root, missing)
        return root

    return make
