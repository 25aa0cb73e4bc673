"""tools/profile_tflite_layers.py: every compute layer alone in float32 and int8 TFLite, timed in turn.

The tool's rows must be the model's exported ops one for one (each TFLite op
of the whole int8 file is one row, a folded padding none), carry the MAC
counter's figures, and its summary tables must be the sums of its rows.
"""

import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import export
from keras_convzoo.backend import keras

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")

#: TFLite op of each Keras layer class the tool times.
OPS = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Add": "ADD", "Dense": "FULLY_CONNECTED",
       "GlobalAveragePooling2D": "MEAN"}


@pytest.mark.slow  # about 60 small conversions: 1-2 minutes
def test_rows_are_the_exported_ops_and_the_tables_their_sums(tmp_path):
    out_json, out_md = tmp_path / "layers.json", tmp_path / "layers.md"
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "profile_tflite_layers.py"), "--model", "mobilenetv2_100", "--size", "32",
         "--samples", "2", "--warmup", "1", "--repeats", "4", "--rounds", "2", "--json", str(out_json),
         "--out", str(out_md)],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out_json.read_text())
    rows = report["rows"]

    # The same model, exported whole to int8: its op counts are the rows' counts, op for op.
    spec = kcz.get_spec("mobilenetv2_100")
    keras.utils.set_random_seed(0)
    fused = kcz.deploy.fuse(kcz.create_model("mobilenetv2_100", input_shape=(32, 32, 3), classifier_activation=None,
                                             **spec.test_overrides))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "whole.tflite"
    export.to_tflite(fused, path, quantization="int8", representative_data=images, verify=False)
    interpreter = export.tflite_interpreter(str(path))
    file_ops = collections.Counter(d["op_name"] for d in interpreter._get_ops_details())
    row_ops = collections.Counter(OPS[r["op"]] for r in rows)
    assert row_ops == file_ops - collections.Counter({"QUANTIZE": 1, "DEQUANTIZE": 1})  # float I/O of the whole file
    assert not any(r["op"] == "ZeroPadding2D" for r in rows)
    padded = [r for r in rows if r["layer"].endswith("dw_conv") and r["input"][0][0] % 2 == 0 and
              r["output"][0] * 2 == r["input"][0][0]]
    assert padded  # the stride-2 depthwise rows start from the padding's input (the padding comes with them)

    # MACs are the counter's, layer by layer.
    by_layer = kcz.profile.count_flops(fused).by_layer
    assert {r["layer"]: r["macs"] for r in rows} == {r["layer"]: by_layer.get(r["layer"], 0) for r in rows}
    assert sum(r["macs"] for r in rows) == kcz.profile.count_flops(fused).total

    # Printed tables: per-op sums and the whole-model line from the unrounded rows.
    text = out_md.read_text()
    for op in {r["op"] for r in rows}:
        mine = [r for r in rows if r["op"] == op]
        t32, t8 = sum(r["float32_us"] for r in mine), sum(r["int8_us"] for r in mine)
        line = next(s for s in text.splitlines() if s.startswith(f"| {op} | {len(mine)} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3:6] == [f"{t32:.0f}", f"{t8:.0f}", f"{t8 / t32:.2f}"]
    whole = report["whole"]
    line = next(s for s in text.splitlines() if s.startswith("| whole model"))
    assert re.findall(r"\| ([\d.]+)", line) == [f"{whole['float32']:.0f}", f"{whole['int8']:.0f}",
                                               f"{whole['int8'] / whole['float32']:.2f}"]
