"""The model index: each registered variant's metadata and counts, as a package data file.

``keras_convzoo/data/models.json`` is generated from the registry by
``tools/make_model_index.py`` (it builds every variant at its default size
and counts parameters and MACs), so that readers that must not import
TensorFlow, the ``convzoo list`` / ``convzoo info`` command line and the
documentation site's model tables, read the registry's facts from one file.
The tests check that the file matches the registry.

Example:
>>> from keras_convzoo.applications import index
>>> entry = index.model_facts("mobilenetv2_050", input_size=(96, 96))
>>> entry["params"]["trainable"]
1968680
"""

import datetime
import json
import os

from keras_convzoo.applications._registry import get_spec, list_models

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


def _reference_check(spec, counts, built_kwargs):
    """``(matches, counted_with)``: the trainable count against the reference, on the model it counted."""
    from keras_convzoo.applications._builder import create_model
    from keras_convzoo.profile import count_params

    if not spec.reference_params:
        return None, ""
    if spec.reference_kwargs and dict(spec.reference_kwargs) != built_kwargs:  # e.g. CCNN: 10 classes at 32x32
        counts = count_params(create_model(spec.name, weights=None, **spec.reference_kwargs))
        counted_with = ", ".join(f"{k}={v!r}" for k, v in spec.reference_kwargs.items())
        return counts["trainable"] == spec.reference_params, counted_with
    return counts["trainable"] == spec.reference_params, ""


def model_facts(name, input_size=None):
    """Builds a variant (random weights) and returns its index entry.

    Args:
        name: registry name.
        input_size: spatial size(s) to build the model and count MACs at,
            one per spatial axis (None: the variant's default size).

    Returns:
        ``spec_facts(name)`` plus ``params`` (``trainable``,
        ``non_trainable``, ``total``), ``macs`` and ``macs_input_shape`` (the
        input shape counted, without batch), ``layers`` (top-level layer
        count), ``matches_reference`` (the trainable count equals
        ``reference_params``; None without a reference) and
        ``reference_counted_with`` (the builder arguments of the model that
        was compared, when not this one).
    """
    from keras_convzoo.applications._builder import create_model
    from keras_convzoo.input_shapes import spec_input_shape
    from keras_convzoo.profile import count_flops, count_params

    spec = get_spec(name)
    shape = spec_input_shape(spec, input_size)
    kwargs = {} if input_size is None else {"input_shape": shape}
    sizes = shape[:-1]
    model = create_model(name, weights=None, **kwargs)
    counts = count_params(model)
    model_sizes = tuple(model.input_shape[1:-1])
    macs = count_flops(model, sizes if None in model_sizes else None)
    matches, counted_with = _reference_check(spec, counts, kwargs)
    facts = spec_facts(name)
    facts.update(
        params={k: int(counts[k]) for k in ("trainable", "non_trainable", "total")},
        macs=int(macs.total),
        macs_input_shape=[int(d) for d in macs.input_shape],
        layers=len(model.layers),
        matches_reference=matches,
        reference_counted_with=counted_with,
    )
    return facts


def build_index(names=None, progress=None):
    """The index of the registered variants (builds each one; minutes for all).

    Args:
        names: registry names (default: all of them).
        progress: optional ``progress(done, total)`` callback.

    Returns:
        ``{"generated_by", "generated_from", "models": [entry, ...]}``.
    """
    import keras
    import tensorflow as tf

    from keras_convzoo import __version__

    names = list_models() if names is None else list(names)
    models = []
    for i, name in enumerate(names):
        models.append(model_facts(name))
        keras.backend.clear_session()
        if progress is not None:
            progress(i + 1, len(names))
    return {
        "generated_by": "tools/make_model_index.py",
        "generated_from": {
            "keras_convzoo": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "date": datetime.date.today().isoformat(),
        },
        "models": models,
    }


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
