"""tools/benchmark_training.py: ours, keras.applications and timm timed in alternating rounds.

The PyTorch side runs in a server process per mode (``TimmServer`` with the
training script); these tests check the protocol's training step is a real
one (the loss falls, as the Keras step's does) and that the tool's table is
computed from the times it measured.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)
    import benchmark_training

    return benchmark_training


def test_timm_training_server_runs_real_steps(tool, tmp_path):
    """Timed steps of the server train: repeated steps on one batch bring the loss down (read back in-process)."""
    from benchmark_vs_anchors import TimmServer

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))
    np.save(tmp_path / "y.npy", rng.integers(0, 1000, 4))
    server = TimmServer(sys.executable, 1, script=tool.TORCH_SCRIPT)
    try:
        server.prepare("mobilenetv2_035", "channels_last", str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"),
                       optimizer="adamw", bfloat16=False)
        times = server.time_ms(3)
        assert len(times) == 3 and all(t > 0 for t in times)
        with pytest.raises(RuntimeError, match="unknown torch mode jit"):
            server.prepare("mobilenetv2_035", "jit", str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"),
                           optimizer="sgd", bfloat16=False)
    finally:
        server.close()
    # the same step code, run in a plain process, lowers the loss (forward, backward and update all run)
    script = tool.TORCH_SCRIPT.split("# one request per stdin line")[0] + (
        "step = training_step(dict(model='mobilenetv2_035', input=sys.argv[2], labels=sys.argv[3], mode='eager', "
        "optimizer='adamw', bfloat16=False))\n"
        "losses = [step() for _ in range(15)]\n"
        "print(losses[0], losses[-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", script, '{"threads": 1}', str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], capture_output=True, text=True, check=True)
    first, last = (float(v) for v in out.stdout.split()[-2:])
    assert last < 0.5 * first, (first, last)


@pytest.mark.slow  # builds MobileNetV2 and keras.applications' twice, two PyTorch servers: about a minute
def test_tool_table_is_the_ratio_of_the_interleaved_medians(tmp_path):
    out_md, out_json = tmp_path / "training.md", tmp_path / "training.json"
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "benchmark_training.py"), "--torch-python", sys.executable,
         "--models", "mobilenetv2_100", "--batch-sizes", "2", "--size", "32", "--warmup", "1", "--repeats", "4",
         "--rounds", "2", "--out", str(out_md), "--json", str(out_json)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (entry,) = json.loads(out_json.read_text())
    assert (entry["model"], entry["optimizer"], entry["batch"]) == ("mobilenetv2_100", "sgd", 2)
    medians = entry["medians"]  # unrounded: the table's cells must be exactly these, rounded once
    assert set(medians) == {"ours", "keras", "timm eager", "timm channels_last"}
    line = next(s for s in result.stdout.splitlines() if s.strip().startswith("mobilenetv2_100"))
    printed = dict(re.findall(r"(ours|keras|timm eager|timm channels_last) ([\d.]+)", line))
    assert printed == {label: f"{ms:.1f}" for label, ms in medians.items()}
    row = next(s for s in out_md.read_text().splitlines() if s.startswith("| mobilenetv2_100 | sgd | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    best_mode = min(("timm eager", "timm channels_last"), key=medians.get)
    best_timm = medians[best_mode]
    assert cells[3] == f"{medians['ours']:.0f}"
    assert cells[4] == f"MobileNetV2 {medians['keras']:.0f}"
    assert cells[5] == f"{medians['ours'] / medians['keras']:.2f}"
    assert cells[6] == f"{best_timm:.0f} ({best_mode.split()[1]})"
    assert cells[7] == f"{medians['ours'] / best_timm:.2f}"
    assert "alternating rounds" in out_md.read_text()


def test_shufflenet_anchor_is_torchvisions_model_and_trains(tool, tmp_path):
    """timm has no ShuffleNetV2: the pair's PyTorch side is torchvision's model of exactly our parameter count.

    The server's step on it trains (the loss falls over repeated steps on one
    batch), so the tools time a real torchvision training step.
    """
    import keras_convzoo as kcz

    anchor = tool.PAIRS["shufflenet_v2_x1_0"][1]
    assert anchor == "torchvision:shufflenet_v2_x1_0"
    model = kcz.create_model("shufflenet_v2_x1_0", weights=None)
    ours = sum(int(np.prod(w.shape)) for w in model.trainable_weights)  # PyTorch's parameters(): BN statistics aside
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))
    np.save(tmp_path / "y.npy", rng.integers(0, 1000, 4))
    script = tool.TORCH_SCRIPT.split("# one request per stdin line")[0] + (
        "model = create_model(sys.argv[2], num_classes=1000)\n"
        "print(type(model).__module__, sum(p.numel() for p in model.parameters()))\n"
        "step = training_step(dict(model=sys.argv[2], input=sys.argv[3], labels=sys.argv[4], mode='channels_last', "
        "optimizer='sgd', bfloat16=False))\n"
        "losses = [step() for _ in range(15)]\n"
        "print(losses[0], losses[-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", script, '{"threads": 1}', anchor, str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], capture_output=True, text=True, check=True)
    (module, count), (first, last) = (line.split() for line in out.stdout.strip().splitlines()[-2:])
    assert module == "torchvision.models.shufflenetv2"
    assert int(count) == ours == 2_278_604
    assert float(last) < 0.5 * float(first), (first, last)
