"""Writes keras_convzoo/data/imagenet_classes.json, the 1000 ImageNet-1k class names.

The names follow keras.applications' ``imagenet_class_index.json`` convention:
class ``i`` is the ``i``-th WordNet id of the sorted ILSVRC-2012 synset list
and its name is the synset's first lemma with spaces replaced by underscores
(``0 n01440764 tench``, ``1 n01443537 goldfish``, ``2 n01484850
great_white_shark``). That rule reproduces keras' list entry for entry,
including its duplicates (134 and 517 are both ``crane``, the bird and the
machine; 638 and 639 both ``maillot``) and capitalisation (``Shih-Tzu``).

The source files are timm's (``timm/data/_info/imagenet_synsets.txt`` and
``imagenet_synset_to_lemma.txt``); this script reads them as text and imports
neither timm nor torch.

Usage:
    python tools/make_imagenet_classes.py [--timm-info DIR] [--out FILE]
"""

import argparse
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "keras_convzoo", "data", "imagenet_classes.json")
FALLBACK_INFO = "/work/venv-torch/lib/python3.11/site-packages/timm/data/_info"


def find_timm_info():
    """Returns timm's ``data/_info`` directory of this interpreter, or the known local one."""
    spec = importlib.util.find_spec("timm")
    if spec is not None and spec.submodule_search_locations:
        return os.path.join(list(spec.submodule_search_locations)[0], "data", "_info")
    return FALLBACK_INFO


def class_index(info_dir):
    """``{"0": [wnid, name], ...}`` from timm's synset and lemma files."""
    with open(os.path.join(info_dir, "imagenet_synsets.txt"), encoding="utf-8") as f:
        synsets = [line.strip() for line in f if line.strip()]
    lemmas = {}
    with open(os.path.join(info_dir, "imagenet_synset_to_lemma.txt"), encoding="utf-8") as f:
        for line in f:
            wnid, _, words = line.rstrip("\n").partition("\t")
            lemmas[wnid] = words
    if len(synsets) != 1000 or synsets != sorted(synsets):
        raise ValueError(f"Expected the 1000 sorted ImageNet-1k synsets, found {len(synsets)}.")
    return {str(i): [wnid, lemmas[wnid].split(",")[0].strip().replace(" ", "_")] for i, wnid in enumerate(synsets)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timm-info", default=None, help="timm's data/_info directory")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    index = class_index(args.timm_info or find_timm_info())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(index, f, ensure_ascii=False, separators=(", ", ": "))
        f.write("\n")
    print(f"wrote {args.out}: {len(index)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
