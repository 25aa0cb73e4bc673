"""``build_application``: the one path every family's constructor goes through."""

import dataclasses
import difflib
import os

from keras_convzoo.applications._registry import check_config_overrides, get_spec, match_choice, to_python
from keras_convzoo.applications.imagenet_utils import IMAGENET_MEAN, IMAGENET_STD
from keras_convzoo.backend import get_source_inputs, is_keras_tensor, keras
from keras_convzoo.input_shapes import application_input_shape
from keras_convzoo.weights import pretrained
from keras_convzoo.weights.keras_files import port_keras_file
from keras_convzoo.weights.loading import WeightsMismatchError, check_weights_path, load, read_metadata
from keras_convzoo.weights.state_dict import is_state_dict_path, read_state_dict

POOLING_MODES = (None, "avg", "max")
#: Spellings of ``pooling`` suggested (not accepted) in the error message.
_POOLING_ALIASES = {"mean": "avg", "average": "avg", "avg_pool": "avg", "gap": "avg", "maximum": "max",
                    "max_pool": "max", "none": None}

#: The keras.applications arguments every constructor takes.
APPLICATION_ARGS = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
)

_GLOBAL_POOL = {
    "avg": {1: "GlobalAveragePooling1D", 2: "GlobalAveragePooling2D", 3: "GlobalAveragePooling3D"},
    "max": {1: "GlobalMaxPooling1D", 2: "GlobalMaxPooling2D", 3: "GlobalMaxPooling3D"},
}


def build_application(
    spec,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    **kwargs,
):
    """Builds a registered variant with keras.applications semantics.

    Validates every argument first, resolves the input (``input_tensor`` or
    ``input_shape``; ``None`` spatial sizes allowed), adds the family body,
    adds the head once (global average pooling, the family's head norm,
    dropout, ``Dense(classes, activation=classifier_activation,
    name="predictions")``) or the requested pooling, builds the model and
    loads the weights (all or none).

    Departure from keras.applications: ``include_top=True`` accepts ``None``
    spatial sizes (every head here pools globally, so no size is needed).

    Pretrained weights (``"imagenet"``, a tag, a state dict file, or a
    ``.weights.h5`` that records its layout) need the architecture to compute
    exactly what the source's does: the builder then applies the source's
    layout (``spec.weight_formats[source].config``, e.g. MobileNetV2's
    ``padding_mode="torch", bn_epsilon=1e-5`` for timm) and refuses a
    conflicting keyword argument.

    Args:
        spec: the variant's ``ModelSpec``.
        include_top: whether to add the classifier.
        weights: None (random initialisation); ``"imagenet"`` (the
            variant's default pretrained weights: keras.applications' file
            where keras.applications has the variant, else timm's default
            tag) or an upstream tag (``"a1h_in1k"``, ``"fb_in22k_ft_in1k"``,
            see ``keras_convzoo.list_pretrained(name)``), downloaded once and
            cached, loaded without torch; the path to a ``.weights.h5`` file
            (one written by ``keras_convzoo.weights.save`` / ``convzoo
            port-timm`` records its layout, which is rebuilt); or, for
            families that read state dicts (timm, torchvision, official
            CCNN), a state dict file (``.npz``, ``.safetensors``, ``.pth``,
            ``.bin``). Tags match case-insensitively (``"ImageNet"``).
        input_tensor: optional tensor to use as the model input (a Keras
            tensor, e.g. the output of ``keras.Input``) of rank
            ``spatial dims + 2``, channels last. With ``input_shape`` too,
            the two must agree (equal sizes where both give one; as
            keras.applications, which refuses a contradicting pair).
        input_shape: shape without the batch axis, channels last, e.g.
            ``(224, 224, 3)`` or ``(None, None, 3)``; numpy ints are fine.
            Defaults to ``(default_size, default_size, 3)`` with
            ``include_top=True`` and ``(None, None, 3)`` otherwise. A
            channels-first shape such as ``(3, 224, 224)`` is refused with
            the channels_last spelling.
        pooling: with ``include_top=False``: None (the plain feature map),
            ``"avg"`` or ``"max"`` (global pooling to a vector, followed by
            the family's head norm where it has one, e.g. ConvNeXt); any
            case (``"AVG"``).
        classes: number of classes with ``include_top=True`` (an int or a
            numpy int; not a bool).
        classifier_activation: activation of the classifier (str, callable
            or None for logits); names match case-insensitively
            (``"Softmax"``).
        name: model name; defaults to the registry name.
        **kwargs: overrides of the family config (``spec.config_fields``),
            checked against each field's type (numpy numbers accepted, bools
            are no ints), choices (case-insensitive) and minimum (e.g. every
            entry of ``depths`` >= 1), see ``check_config_overrides``.

    Returns:
        A ``keras.Model``.

    Raises:
        TypeError: for an unknown keyword argument or a wrongly typed one.
        ValueError: for a value outside what is allowed, naming it.

    Example:
    >>> from keras_convzoo.applications import get_spec
    >>> model = build_application(get_spec("seresnet50"), include_top=False, pooling="avg")
    """
    unknown = sorted(set(kwargs) - set(spec.config_fields))
    if unknown:
        hint = " (timm's pretrained=True is weights='imagenet' here)" if "pretrained" in unknown else ""
        raise TypeError(
            f"{spec.entrypoint}() got unknown argument(s): {unknown}{hint}. Allowed: "
            f"{list(APPLICATION_ARGS)} and the {spec.family} options {list(spec.config_fields)}."
        )
    # numpy scalars count as the Python numbers they hold (np.float32(1.0), np.int64(10)); bools stay bools
    include_top, classes, input_shape = to_python(include_top), to_python(classes), to_python(input_shape)
    if kwargs:
        kwargs = check_config_overrides(spec.config, kwargs, spec.entrypoint)
        spec = spec.with_config(**kwargs)
    if not isinstance(include_top, bool):
        raise TypeError(f"`include_top` must be a bool. Received: include_top={include_top!r}")
    if keras.backend.image_data_format() != "channels_last":
        raise ValueError(
            "keras_convzoo models are channels_last only; set "
            "keras.backend.set_image_data_format('channels_last')."
        )
    weights = _canonical_weights(weights, spec)
    weights_kind, weights_path, weights_info = _check_weights(weights, spec)
    if weights_kind == "pretrained":
        _check_pretrained_classes(weights_info, weights, include_top, classes)
        layout = spec.weight_formats[weights_info.source].config
        spec = _apply_layout(spec, kwargs, layout, f"weights={weights!r} ({weights_info.source}'s {weights_info.key})")
    elif weights_kind == "state_dict":
        source = spec.state_dict_source
        spec = _apply_layout(spec, kwargs, spec.weight_formats[source].config, f"weights={weights!r} ({source})")
    elif weights_kind == "file" and weights_info is not None:
        spec = _apply_layout(spec, kwargs, weights_info.get("config") or {}, f"weights={weights!r}")
    pooling = match_choice("pooling", pooling, POOLING_MODES, spec.entrypoint, aliases=_POOLING_ALIASES)
    if include_top:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"`classes` must be a positive int. Received: classes={classes!r}")
        classifier_activation = _check_activation(classifier_activation)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"`name` must be a str or None. Received: name={name!r}")

    input_shape = application_input_shape(spec, input_shape, input_tensor, include_top)
    if weights_kind == "pretrained" and input_shape[-1] != spec.input_channels:
        raise ValueError(
            f"Pretrained weights ({weights_info.key}) need {spec.input_channels} input channels. "
            f"Received: input_shape={input_shape}"
        )
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="input")
    elif is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape, name="input")

    x, features = spec.body(inputs, spec.config)
    x = _add_head(x, spec, include_top, pooling, classes, classifier_activation)
    model_inputs = inputs
    if input_tensor is not None:
        model_inputs = get_source_inputs(input_tensor)
        if len(model_inputs) == 1:
            model_inputs = model_inputs[0]
    model = keras.Model(model_inputs, x, name=name or spec.name)
    model.convzoo_name = spec.name
    model.convzoo_stages = {stage: producing_layer(tensor) for stage, tensor in features.items()}
    model.pretrained_cfg = None
    if weights_kind == "pretrained":
        _load_pretrained(model, spec, weights_info)
    elif weights_kind == "state_dict":
        spec.port_weights(model, read_state_dict(weights_path))
        model.pretrained_cfg = _local_entry(spec, weights_path, classes if include_top else 1000)
    elif weights_kind == "file" and weights_info is not None and weights_info.get("include_top") and not include_top:
        _load_without_top(model, spec, weights_path, input_shape, weights_info.get("classes", 1000))
    elif weights_path is not None:
        _load_weights(model, weights_path, include_top, classes, input_shape)
    if weights_kind == "file" and weights_info is not None:
        model.pretrained_cfg = (_entry_or_none(spec.name, weights_info["tag"]) if weights_info.get("tag") else None) \
            or _local_entry(spec, weights_path, weights_info.get("classes", 1000), weights_info.get("source"))
    return model


def producing_layer(tensor):
    """Name of the layer that outputs a symbolic tensor (Keras 3 and tf_keras).

    Args:
        tensor: a symbolic tensor of a functional graph.

    Returns:
        The layer name.

    Raises:
        ValueError: when the tensor is not a layer's output.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:  # pragma: no cover - every body output is a layer output
        raise ValueError(f"The stage output {tensor!r} is not the output of a Keras layer.")
    return history[0].name


def _canonical_weights(weights, spec):
    """The spelling of a pretrained tag that ``weights`` names case-insensitively (``"ImageNet"`` ->
    ``"imagenet"``); anything else unchanged (an unknown tag is refused by ``pretrained.resolve`` with the
    closest spelling)."""
    if not isinstance(weights, str) or not pretrained.looks_like_tag(weights):
        return weights
    if weights.lower() == pretrained.DEFAULT_TAG:
        return pretrained.DEFAULT_TAG
    tags = {e.tag for e in pretrained.list_pretrained(spec.name) if e.name == spec.name}
    if weights not in tags:
        same = [t for t in tags if t.lower() == weights.lower()]
        if len(same) == 1:
            return same[0]
    return weights


def _check_weights(weights, spec):
    """Returns ``(kind, path, info)``: kind None, ``"pretrained"`` (info: the table entry), ``"file"`` (info:
    the file's layout record or None) or ``"state_dict"``."""
    if weights is None:
        return None, None, None
    if isinstance(weights, str) and pretrained.looks_like_tag(weights):
        return "pretrained", None, pretrained.resolve(spec.name, weights)
    if spec.port_weights is not None and is_state_dict_path(weights):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(f"The weights file does not exist. Received: weights={path!r}")
        return "state_dict", path, None
    path = check_weights_path(weights)
    record = read_metadata(path)
    if record is not None and record.get("name") != spec.name:
        raise ValueError(
            f"The weights file {path!r} holds weights of '{record.get('name')}' (recorded when it was written), "
            f"not of '{spec.name}': build create_model({record.get('name')!r}, weights=...). Received: weights={path!r}"
        )
    return "file", path, record


def _check_pretrained_classes(entry, weights, include_top, classes):
    if not include_top:
        return
    if entry.num_classes == 0:
        raise ValueError(
            f"weights={weights!r} ({entry.key}) is a feature extractor without classifier; pass include_top=False."
        )
    if classes != entry.num_classes:
        raise ValueError(
            f"With weights={weights!r} ({entry.key}) and include_top=True, `classes` must be {entry.num_classes} "
            "(the pretrained classifier); use include_top=False for another head. "
            f"Received: classes={classes!r}"
        )


def _apply_layout(spec, kwargs, layout, what):
    """Applies the config overrides under which the weights compute right, refusing contradicting kwargs."""
    for field, value in layout.items():
        if field in kwargs and kwargs[field] != value:
            raise ValueError(
                f"{what} holds weights that {spec.entrypoint} reproduces only with {field}={value!r} "
                f"(applied automatically). Received: {field}={kwargs[field]!r}"
            )
    return spec.with_config(**layout) if layout else spec


def _local_entry(spec, path, classes, source=None):
    """The pretrained config of a local file of a PyTorch source (timm, torchvision): the scaling of that source's
    default tag for the variant, else PyTorch's ImageNet mean/std; None for other files."""
    if source is None:
        source = spec.state_dict_source
    if source not in ("timm", "torchvision"):
        return None
    rows = [e for e in pretrained.list_pretrained(spec.name) if e.name == spec.name and e.source == source]
    base = next((e for e in rows if e.default), rows[0] if rows else None)
    local = dict(tag="local", default=False, filename=os.path.basename(path), hub_id=None, url=None, sha256=None,
                 sha256_prefix=None, num_classes=classes)
    if base is not None:
        return dataclasses.replace(base, notes=f"a local file, scaled as {base.key}", **local)
    return pretrained.PretrainedEntry(
        name=spec.name, source=source, license="unknown", input_size=(spec.default_size,) * 2, preprocessing="torch",
        mean=IMAGENET_MEAN, std=IMAGENET_STD, notes=f"a local {source} file: PyTorch's ImageNet mean/std", **local
    )


def _entry_or_none(name, tag):
    try:
        return pretrained.resolve(name, tag)
    except ValueError:
        return None


def _load_pretrained(model, spec, entry):
    """Fetches (or finds cached) and loads a pretrained table entry into the model; records it on the model."""
    path = pretrained.fetch(entry)
    weight_format = spec.weight_formats[entry.source]
    try:
        if weight_format.keras_reference is not None:
            port_keras_file(model, path, weight_format, spec, entry.num_classes)
        else:
            weight_format.port_state_dict(model, read_state_dict(path), entry.source)
    except pretrained.UnreadableFileError as error:
        pretrained.discard(path)
        raise pretrained.CorruptDownloadError(
            f"{str(error).rstrip('.')}; it came from {entry.download_url} and was removed from the cache: run the "
            "same call again to download it anew."
        ) from None
    model.pretrained_cfg = entry


def _load_without_top(model, spec, path, input_shape, classes):
    """Loads the trunk of a weights file saved with the top into a model without top (all or none)."""
    full_shape = (None,) * (len(input_shape) - 1) + (input_shape[-1],)
    full = build_application(spec, include_top=True, input_shape=full_shape, classes=classes,
                             classifier_activation=None)
    _load_weights(full, path, True, classes, input_shape)
    updates = []
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source = full.get_layer(layer.name)
        except ValueError:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has no counterpart in the weights file {path!r}.",
                layer=layer.name,
            ) from None
        values = source.get_weights()
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(int(d) for d in w.shape) for w in layer.weights]
        if shapes != wanted:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has weight shapes {wanted} but the weights file {path!r} "
                f"gives {shapes}. No weight was changed.",
                layer=layer.name,
            )
        updates.append((layer, values))
    for layer, values in updates:
        layer.set_weights(values)


def _activation_names():
    """Public names of ``keras.activations`` functions."""
    return sorted(
        n for n in dir(keras.activations)
        if not n.startswith("_") and n not in ("get", "serialize", "deserialize") and callable(getattr(keras.activations, n))
    )


def _check_activation(classifier_activation):
    """Returns the activation to use: None, a callable, or a Keras activation name (matched case-insensitively)."""
    if classifier_activation is None or callable(classifier_activation):
        return classifier_activation
    if not isinstance(classifier_activation, str):
        raise TypeError(
            "`classifier_activation` must be None, a str or a callable. "
            f"Received: classifier_activation={classifier_activation!r}"
        )
    for candidate in dict.fromkeys((classifier_activation, classifier_activation.strip().lower())):
        try:
            keras.activations.get(candidate)
            return candidate
        except (ValueError, TypeError):
            continue
    names = _activation_names()
    close = difflib.get_close_matches(classifier_activation.strip().lower(), names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        "`classifier_activation` must name a Keras activation (e.g. 'softmax', "
        f"'sigmoid', 'linear') or be None.{hint} Received: classifier_activation={classifier_activation!r}"
    )


def _add_head(x, spec, include_top, pooling, classes, classifier_activation):
    dims = len(x.shape) - 2
    if include_top:
        x = getattr(keras.layers, _GLOBAL_POOL["avg"][dims])(name="avg_pool")(x)
        if spec.head is not None:
            x = spec.head(x, spec.config)
        drop_rate = getattr(spec.config, "drop_rate", 0.0)
        if drop_rate:
            x = keras.layers.Dropout(drop_rate, name="head_dropout")(x)
        # Under a mixed precision policy the classifier computes in float32 (Keras' mixed
        # precision guide): float32 logits/softmax, the same layer and weights otherwise.
        policy = keras.mixed_precision.global_policy()
        dtype = "float32" if policy.compute_dtype != policy.variable_dtype else None
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions", dtype=dtype)(x)
    if pooling is not None:
        layer_name = "avg_pool" if pooling == "avg" else "max_pool"
        x = getattr(keras.layers, _GLOBAL_POOL[pooling][dims])(name=layer_name)(x)
        if spec.head is not None:
            x = spec.head(x, spec.config)
    return x


def _load_weights(model, path, include_top, classes, input_shape):
    try:
        load(model, path)
    except WeightsMismatchError as error:
        if include_top and error.layer == "predictions":
            raise ValueError(
                f"`classes={classes}` does not match the classifier in the weights file {path!r} "
                f"({error.detail}). Pass the classes the file was saved with, or "
                "include_top=False with a file saved without the top."
            ) from error
        first = next(layer for layer in model.layers if layer.weights)
        if error.layer == first.name:
            raise ValueError(
                f"The input channels ({input_shape[-1]}, from input_shape={input_shape}) do not match "
                f"the weights file {path!r} ({error.detail}). With weights=None any channel count works."
            ) from error
        raise


def create_model(name, **kwargs):
    """Builds a registered model by name.

    Args:
        name: a name from ``list_models()``.
        **kwargs: the keras.applications arguments (``include_top``,
            ``weights``, ``input_tensor``, ``input_shape``, ``pooling``,
            ``classes``, ``classifier_activation``, ``name``) and the
            family's config fields.

    Returns:
        A ``keras.Model``.

    Example:
    >>> model = create_model("resnext50_32x4d", include_top=False, pooling="avg")
    """
    return build_application(get_spec(name), **kwargs)
