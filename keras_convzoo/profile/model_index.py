"""Counting each registered variant for the model index (``keras_convzoo/data/models.json``).

``model_facts`` builds one variant (random weights) and adds its parameter
and MAC counts to the registry metadata of
``keras_convzoo.applications.index.spec_facts``; ``build_index`` does so for
every variant (``tools/make_model_index.py`` writes the file; ``convzoo info
NAME --input-size`` prints one entry at another size).

Example:
>>> from keras_convzoo.profile import model_index
>>> entry = model_index.model_facts("mobilenetv2_050", input_size=(96, 96))
>>> entry["params"]["trainable"]
1968680
"""

import datetime

from keras_convzoo.applications import create_model, get_spec, list_models
from keras_convzoo.applications.index import spec_facts
from keras_convzoo.backend import keras, tf
from keras_convzoo.input_shapes import spec_input_shape
from keras_convzoo.profile.flops import count_flops
from keras_convzoo.profile.params import count_params


def _reference_check(spec, counts, built_kwargs):
    """``(matches, counted_with)``: the trainable count against the reference, on the model it counted."""
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
