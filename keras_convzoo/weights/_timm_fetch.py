"""Writes a timm model's state dict to an ``.npz`` file; run as a script, never imported.

Usage: python _timm_fetch.py TIMM_NAME OUT_DIR [--random-init]

``keras_convzoo.weights.timm`` runs this file in a child process of its own
Python: importing timm where TensorFlow is loaded crashes the process (timm
imports ``torch._dynamo``, which imports Triton, whose native library
segfaults when it loads after TensorFlow's; measured with TF 2.21, torch 2.14.1,
Triton 3.8). So this file imports neither TensorFlow nor ``keras_convzoo``.

Writes ``OUT_DIR/state.npz`` (the state dict as numpy arrays) and
``OUT_DIR/status.json``: ``{"ok": true}`` or ``{"error": KIND, "message": TEXT}``
with KIND ``"import"`` (no timm), ``"unknown"`` (timm has no pretrained
weights under that name) or ``"fetch"`` (creating the model failed, e.g. no
network). ``--random-init`` builds the model with ``pretrained=False`` (the
tests check the transfer with it, without a network).
"""

import json
import os
import sys

# Python put this file's folder first on sys.path; its timm.py would shadow the timm package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]


def _write_status(out_dir, **status):
    with open(os.path.join(out_dir, "status.json"), "w") as handle:
        json.dump(status, handle)


def main(argv):
    timm_name, out_dir = argv[0], argv[1]
    pretrained = "--random-init" not in argv[2:]
    try:
        import numpy as np
        import timm
    except ImportError as error:
        _write_status(out_dir, error="import", message=f"{type(error).__name__}: {error}")
        return 0
    if pretrained and not timm.list_pretrained(f"{timm_name}.*") and not timm.list_pretrained(timm_name):
        _write_status(out_dir, error="unknown", message=f"timm has no pretrained weights for {timm_name!r}")
        return 0
    try:
        model = timm.create_model(timm_name, pretrained=pretrained)
    except Exception as error:  # network, hub or cache errors
        _write_status(out_dir, error="fetch", message=f"{type(error).__name__}: {error}")
        return 0
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    np.savez(os.path.join(out_dir, "state.npz"), **arrays)
    _write_status(out_dir, ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
