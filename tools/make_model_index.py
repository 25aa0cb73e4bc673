"""Generates keras_convzoo/data/models.json (every registered variant's metadata and counts) and README's model table.

Each entry is the registry's ``ModelSpec`` metadata plus what building the
variant at its default size gives (parameters, MACs, layers, whether the
trainable count equals the reference implementation's); see
``keras_convzoo.profile.model_index`` (the counts) and
``keras_convzoo.applications.index`` (the file). ``convzoo list`` /
``convzoo info`` and the documentation site read this file instead of
importing TensorFlow.

Usage::

    python tools/make_model_index.py            # rebuilds every variant (about a minute), writes the file and README's table
    python tools/make_model_index.py --check    # exits 1 when the file or README's table differs from the registry
"""

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- model table: begin -->", "<!-- model table: end -->"


def readme_with_table(readme, table):
    """README's text with ``table`` between the model-table markers."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def _readme_with_table(built):
    from keras_convzoo.applications import index

    with open(README, encoding="utf-8") as handle:
        readme = handle.read()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{README} lacks the markers {BEGIN} / {END}")
    return readme, readme_with_table(readme, index.markdown_table(built))


def _comparable(index):
    """The index without its provenance (versions and date differ between runs, the facts must not)."""
    return index["models"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)

    from keras_convzoo.applications import index
    from keras_convzoo.profile.model_index import build_index
    from keras_convzoo.progress import ProgressBar

    built = build_index(progress=ProgressBar("models"))
    readme, new_readme = _readme_with_table(json.loads(json.dumps(built)))
    if args.check:
        if new_readme != readme:
            print(f"{README}'s model table is out of date: run python tools/make_model_index.py")
            return 1
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
    with open(README + ".part", "w", encoding="utf-8") as handle:
        handle.write(new_readme)
    os.replace(README + ".part", README)
    print(f"wrote {index.INDEX_PATH} ({len(built['models'])} models) and {README}'s model table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
