"""Porting timm weights onto registered models: ``port_timm`` and ``convert_timm_weights``.

They need the registry (a model's family, found by its name) and the builder
(a model built by name), so they live here, above ``keras_convzoo.weights``,
whose generic ``port_state_dict`` does the porting itself. Their paths of the
previous release (``keras_convzoo.weights.port_timm``,
``keras_convzoo.weights.timm.convert_timm_weights`` ...) answer until 0.2,
with a ``DeprecationWarning`` (``keras_convzoo.weights._moved``).

Example:
>>> from keras_convzoo.applications import convert_timm_weights
>>> convert_timm_weights("seresnet50", "seresnet50.weights.h5", checkpoint="model.safetensors")
'seresnet50.weights.h5'
"""

import os

from keras_convzoo.applications._builder import create_model
from keras_convzoo.applications._registry import get_spec, list_models
from keras_convzoo.weights import pretrained
from keras_convzoo.weights._moved import register_moved
from keras_convzoo.weights.loading import WeightsMismatchError, save
from keras_convzoo.weights.state_dict import read_state_dict
from keras_convzoo.weights.timm import port_state_dict


def _model_spec(model, spec):
    """The registered spec a model was built from: ``spec`` (a name or a ModelSpec), else its own name."""
    if spec is not None:
        return get_spec(spec) if isinstance(spec, str) else spec
    name = getattr(model, "convzoo_name", None) or model.name
    if name not in list_models():
        raise WeightsMismatchError(
            f"Model '{model.name}' is not named after a registered variant; pass spec=NAME (e.g. "
            "spec='seresnet50') to say which variant it is."
        )
    return get_spec(name)


def _layout_hint(spec, source):
    config = spec.weight_formats[source].config
    if config:
        overrides = ", ".join(f"{k}={v!r}" for k, v in config.items())
        how = f"with {overrides} (its {source} layout), e.g. create_model({spec.name!r}, {overrides})"
    else:
        how = "with the default configuration of its family (no epsilon or padding override)"
    return (
        f" Build the model {how}, or pass the checkpoint as `weights=` to the constructor, "
        f"which applies the {source} layout itself."
    )


def port_timm(model, state_dict, progress=None, spec=None):
    """Loads a timm (or torchvision, same names) state dict into a zoo model (all or nothing).

    The family's ``KeyMap`` (``get_spec(name).weight_formats["timm"]``)
    maps timm's module names onto our deterministic layer names;
    ``port_state_dict`` converts the arrays and checks everything before
    writing. The model must compute what timm's does: MobileNetV2 is built
    for keras.applications' "same" padding by default, so build it with the
    timm layout (``padding_mode="torch", bn_epsilon=1e-5``) or pass the
    checkpoint as ``weights=``, which does so.

    Args:
        model: a ResNeXt, SE-ResNet, SE-ResNeXt, MobileNetV2 or ConvNeXt
            built by keras_convzoo with the checkpoint's variant.
        state_dict: mapping of timm parameter names to numpy arrays or
            torch tensors (e.g. ``read_state_dict("model.safetensors")``).
        progress: optional ``progress(done, total)`` called per layer, e.g. a
            ``keras_convzoo.progress.ProgressBar``.
        spec: registry name or ``ModelSpec`` of the variant; default: the
            one the model was built from (its name).

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the tensor and the
            layer of the first problem, or a variant without timm weights.
        TypeError: if ``state_dict`` is not a mapping.

    Example:
    >>> model = keras_convzoo.SEResNet50()
    >>> port_timm(model, read_state_dict("seresnet50.safetensors"))
    """
    spec = _model_spec(model, spec)
    if "timm" not in spec.weight_formats:
        raise WeightsMismatchError(
            f"'{spec.name}' has no timm layout to port from; its weight sources: {sorted(spec.weight_formats)}."
        )
    key_map = spec.weight_formats["timm"].key_map
    return port_state_dict(model, state_dict, key_map, "timm", progress, _layout_hint(spec, "timm"))


def convert_timm_weights(name, out, checkpoint=None, tag=None, progress=None):
    """Writes a registered model's timm weights to a ``.weights.h5`` file that records its layout.

    The model is built with ``include_top=True``, the tag's classes and the
    timm layout; the file records the registry name, the layout, the
    classes and the tag (``keras_convzoo.weights.save``), so loading it by
    path (``weights="file.weights.h5"``) builds that layout again or refuses.

    Args:
        name: registry name with timm weights (e.g. ``"seresnet50"``).
        out: output path ending with ``.weights.h5``.
        checkpoint: a timm state dict file (``.safetensors``, ``.npz``,
            ``.pth``, ``.bin``), read without torch. None: download the
            tag's ``model.safetensors`` from the hub (cached).
        tag: pretrained tag (default: the variant's ``"imagenet"`` tag among
            the timm ones); with a checkpoint it is only recorded.
        progress: optional ``progress(done, total)`` (see ``port_timm``).

    Returns:
        The path written.

    Raises:
        ValueError: unknown name or tag, bad ``out`` suffix, a download that
            fails, or a checkpoint that does not fit (``WeightsMismatchError``).

    Example:
    >>> convert_timm_weights("seresnet50", "seresnet50.weights.h5", checkpoint="model.safetensors")
    'seresnet50.weights.h5'
    """
    spec = get_spec(name)
    if "timm" not in spec.weight_formats:
        raise ValueError(f"'{name}' has no timm counterpart to port weights from.")
    out = os.fspath(out)
    if not out.endswith(".weights.h5"):
        raise ValueError(f"The output file must end with '.weights.h5'. Received: out={out!r}")
    entry = pretrained.resolve(name, tag or "imagenet", source="timm") if checkpoint is None or tag else None
    if checkpoint is None:
        checkpoint = pretrained.fetch(entry)
    classes = entry.num_classes if entry is not None and entry.num_classes else 1000
    state = read_state_dict(checkpoint)
    config = dict(spec.weight_formats["timm"].config)
    model = create_model(name, classifier_activation=None, classes=classes, **config)
    port_timm(model, state, progress=progress)
    save(model, out, {"name": name, "source": "timm", "tag": entry.tag if entry else None, "config": config,
                      "classes": classes, "include_top": True})
    return out


# The paths of the previous release (keras_convzoo.weights.port_timm ...) answer until 0.2.
register_moved("port_timm", "keras_convzoo.applications.port_timm", port_timm)
register_moved("convert_timm_weights", "keras_convzoo.applications.convert_timm_weights", convert_timm_weights)
