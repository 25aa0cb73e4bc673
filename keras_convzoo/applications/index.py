"""The model index: each registered variant's metadata and counts, as a package data file.

``keras_convzoo/data/models.json`` is generated from the registry by
``tools/make_model_index.py`` (``keras_convzoo.profile.model_index`` builds
every variant at its default size and counts parameters and MACs), so that
readers that must not import TensorFlow, the ``convzoo list`` / ``convzoo
info`` command line and the documentation site's model tables, read the
registry's facts from one file. This module holds what needs no model:
the registry metadata of an entry, reading the file and README's table.
The tests check that the file matches the registry.

Example:
>>> from keras_convzoo.applications import index
>>> index.spec_facts("mobilenetv2_050")["default_size"]
224
"""

import json
import os

from keras_convzoo.applications._registry import get_spec

#: Where the generated index lives (package data).
INDEX_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "models.json")

#: The ``ModelSpec`` attributes copied into each entry as they are.
SPEC_FIELDS = (
    "name",
    "family",
    "entrypoint",
    "default_size",
    "min_size",
    "input_channels",
    "spatial_dims",
    "accepted_spatial_dims",
    "reference_params",
    "reference",
    "paper",
    "timm_name",
    "preprocessing",
)


def spec_facts(name):
    """The registry's metadata of a variant as JSON-ready values (no model is built).

    Args:
        name: registry name.

    Returns:
        A dict over ``SPEC_FIELDS`` (tuples as lists).
    """
    spec = get_spec(name)
    facts = {}
    for field in SPEC_FIELDS:
        value = getattr(spec, field)
        facts[field] = list(value) if isinstance(value, tuple) else value
    return facts


def markdown_table(index=None):
    """The README's model table: one row per variant, from the index and the pretrained table.

    Args:
        index: an index dict (default: ``read_index()``).

    Returns:
        Markdown text (no trailing newline).
    """
    from keras_convzoo.weights.pretrained import list_pretrained

    index = read_index() if index is None else index
    defaults = {e.name: e for e in list_pretrained() if e.default}
    lines = ["| model | constructor | params | MACs | default input | `weights=\"imagenet\"` |",
             "|---|---|---:|---:|---|---|"]
    for entry in index["models"]:
        size = "x".join(str(d) for d in entry["macs_input_shape"][:-1])
        weights = defaults.get(entry["name"])
        lines.append(
            f"| `{entry['name']}` | `{entry['entrypoint']}` | {entry['params']['trainable'] / 1e6:.1f}M | "
            f"{entry['macs'] / 1e9:.2f}G | {size} | {_weights_cell(weights)} |"
        )
    return "\n".join(lines)


def _weights_cell(entry):
    """``timm `a1h_in1k```, ``keras.applications``: where the default weights come from."""
    if entry is None:
        return "-"
    source = "keras.applications" if entry.source == "keras" else entry.source
    return source if entry.tag == entry.source else f"{source} `{entry.tag}`"


def read_index(path=INDEX_PATH):
    """Reads the generated index.

    Args:
        path: the JSON file (default: the package's).

    Returns:
        The index dict (see ``build_index``).
    """
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
