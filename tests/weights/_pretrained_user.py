"""A user's process: loads pretrained weights by name and writes the outputs (run by test_pretrained.py).

Usage: python _pretrained_user.py CASES_JSON OUT_NPZ

``CASES_JSON``: a list of ``{"id", "name", "weights", "kwargs", "inputs", "preprocess"}``;
``inputs`` names an ``.npz`` with an ``inputs`` array. Each case is built with
``create_model(name, weights=weights, classifier_activation=None, **kwargs)``
and run on the inputs (after ``preprocess_input(x, model)`` when
``preprocess``). Writes ``OUT_NPZ`` with one output per case id and prints
one JSON line: ``{"torch_imported": bool, "tags": {id: tag}}``.
"""

import json
import sys

import numpy as np

import keras_convzoo as kcz


def main(cases, out):
    outputs, tags = {}, {}
    for case in cases:
        model = kcz.create_model(case["name"], weights=case["weights"], classifier_activation=None, **case["kwargs"])
        with np.load(case["inputs"]) as data:
            inputs = data["inputs"]
        if case["preprocess"]:
            inputs = kcz.preprocess_input(inputs, model)
        outputs[case["id"]] = np.asarray(model(inputs, training=False))
        tags[case["id"]] = model.pretrained_cfg.key
    np.savez(out, **outputs)
    print(json.dumps({"torch_imported": "torch" in sys.modules, "tags": tags}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2])
