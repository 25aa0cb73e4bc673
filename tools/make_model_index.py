"""Generates keras_convzoo/data/models.json: every registered variant's metadata and counts.

Each entry is the registry's ``ModelSpec`` metadata plus what building the
variant at its default size gives (parameters, MACs, layers, whether the
trainable count equals the reference implementation's); see
``keras_convzoo.applications.index``. ``convzoo list`` / ``convzoo info`` and
the documentation site read this file instead of importing TensorFlow.

Usage::

    python tools/make_model_index.py            # rebuilds every variant (a few minutes) and writes the file
    python tools/make_model_index.py --check    # exits 1 when the file differs from the registry
"""

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _comparable(index):
    """The index without its provenance (versions and date differ between runs, the facts must not)."""
    return index["models"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)

    from keras_convzoo.applications import index
    from keras_convzoo.progress import ProgressBar

    built = index.build_index(progress=ProgressBar("models"))
    if args.check:
        current = index.read_index()
        if _comparable(current) != _comparable(json.loads(json.dumps(built))):
            names = {e["name"]: e for e in current["models"]}
            for entry in json.loads(json.dumps(built))["models"]:
                if names.get(entry["name"]) != entry:
                    print(f"out of date: {entry['name']}: file {names.get(entry['name'])} != registry {entry}")
            print(f"{index.INDEX_PATH} is out of date: run python tools/make_model_index.py")
            return 1
        print(f"{index.INDEX_PATH} matches the registry ({len(built['models'])} models)")
        return 0
    folder = os.path.dirname(index.INDEX_PATH)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        json.dump(built, handle, indent=1)
        handle.write("\n")
    os.replace(handle.name, index.INDEX_PATH)
    print(f"wrote {index.INDEX_PATH} ({len(built['models'])} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
