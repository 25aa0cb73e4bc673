"""``build_application``: the one path every family's constructor goes through."""

import os

from keras_convzoo.applications._registry import get_spec, list_models
from keras_convzoo.backend import get_source_inputs, is_keras_tensor, keras
from keras_convzoo.weights.loading import (
    WeightsMismatchError,
    check_weights_path,
    imagenet_weights_path,
    load,
)
from keras_convzoo.weights.state_dict import is_state_dict_path, read_state_dict

POOLING_MODES = (None, "avg", "max")

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


def entrypoint_arguments(local_vars):
    """Turns an entrypoint's ``locals()`` into ``build_application`` keyword arguments.

    The entrypoints spell out the keras.applications signature and pass
    ``**kwargs`` (config fields) through; this flattens both.
    """
    arguments = {k: v for k, v in local_vars.items() if k in APPLICATION_ARGS}
    arguments.update(local_vars.get("kwargs", {}))
    return arguments


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

    Weights from a reference implementation (``"imagenet"``, or a timm state
    dict file) need the architecture to compute exactly what timm's does:
    the builder then applies ``spec.timm_config`` (e.g. MobileNetV2's
    ``padding_mode="torch", bn_epsilon=1e-5``) and refuses a conflicting
    keyword argument.

    Args:
        spec: the variant's ``ModelSpec``.
        include_top: whether to add the classifier.
        weights: None (random initialisation), ``"imagenet"`` (weights
            ported from timm, read from
            ``$KERAS_CONVZOO_HOME/<name>.weights.h5``, made by ``convzoo
            port-timm``; the head is skipped with ``include_top=False``), the
            path to a ``.weights.h5`` file saved from the same architecture,
            or, for families with a ``spec.port_weights`` (timm-ported
            families, CCNN), a reference state dict file (``.npz``,
            ``.safetensors``, ``.pth``, ``.bin``).
        input_tensor: optional tensor to use as the model input (a Keras
            tensor, e.g. the output of ``keras.Input``).
        input_shape: shape without the batch axis, e.g. ``(224, 224, 3)`` or
            ``(None, None, 3)``. Defaults to ``(default_size, default_size, 3)``
            with ``include_top=True`` and ``(None, None, 3)`` otherwise.
        pooling: with ``include_top=False``: None (the plain feature map),
            ``"avg"`` or ``"max"`` (global pooling to a vector, followed by
            the family's head norm where it has one, e.g. ConvNeXt).
        classes: number of classes with ``include_top=True``.
        classifier_activation: activation of the classifier (str, callable
            or None for logits).
        name: model name; defaults to the registry name.
        **kwargs: overrides of the family config (``spec.config_fields``).

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
        raise TypeError(
            f"{spec.entrypoint}() got unknown argument(s): {unknown}. Allowed: "
            f"{list(APPLICATION_ARGS)} and the {spec.family} options {list(spec.config_fields)}."
        )
    if kwargs:
        spec = spec.with_config(**kwargs)
    if not isinstance(include_top, bool):
        raise TypeError(f"`include_top` must be a bool. Received: include_top={include_top!r}")
    if keras.backend.image_data_format() != "channels_last":
        raise ValueError(
            "keras_convzoo models are channels_last only; set "
            "keras.backend.set_image_data_format('channels_last')."
        )
    if _is_imagenet(weights) and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, `classes` must be 1000 (the ImageNet "
            f"classifier); use include_top=False for another head. Received: classes={classes!r}"
        )
    weights_kind, weights_path = _check_weights(weights, spec)
    if weights_kind in ("imagenet", "state_dict") and spec.timm_name is not None:
        spec = _apply_timm_config(spec, kwargs, weights)
    if pooling not in POOLING_MODES:
        raise ValueError(f"`pooling` must be one of {POOLING_MODES}. Received: pooling={pooling!r}")
    if include_top:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"`classes` must be a positive int. Received: classes={classes!r}")
        _check_activation(classifier_activation)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"`name` must be a str or None. Received: name={name!r}")

    input_shape = _resolve_input_shape(spec, input_shape, input_tensor, include_top)
    if weights_kind == "imagenet" and input_shape[-1] != spec.input_channels:
        raise ValueError(
            f"ImageNet weights need {spec.input_channels} input channels. Received: input_shape={input_shape}"
        )
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="input")
    elif is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape, name="input")

    x, _features = spec.body(inputs, spec.config)
    x = _add_head(x, spec, include_top, pooling, classes, classifier_activation)
    model_inputs = inputs
    if input_tensor is not None:
        model_inputs = get_source_inputs(input_tensor)
        if len(model_inputs) == 1:
            model_inputs = model_inputs[0]
    model = keras.Model(model_inputs, x, name=name or spec.name)
    if weights_kind == "state_dict":
        spec.port_weights(model, read_state_dict(weights_path))
    elif weights_kind == "imagenet" and not include_top:
        _load_without_top(model, spec, weights_path, input_shape)
    elif weights_path is not None:
        _load_weights(model, weights_path, include_top, classes, input_shape)
    return model


def _is_imagenet(weights):
    return isinstance(weights, str) and weights == "imagenet"


def _check_weights(weights, spec):
    """Returns ``(kind, path)``: kind None, ``"file"``, ``"state_dict"`` or ``"imagenet"``."""
    if weights is None:
        return None, None
    if _is_imagenet(weights):
        if spec.timm_name is None:
            available = [n for n in list_models() if get_spec(n).timm_name]
            raise ValueError(
                f"No ImageNet weights exist for '{spec.name}'; weights='imagenet' is available for "
                f"{available}. Received: weights='imagenet'"
            )
        path = imagenet_weights_path(spec.name)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights='imagenet' loads {path!r}, which does not exist (keras_convzoo downloads "
                f"nothing by itself). Create it once with `convzoo port-timm {spec.name} --out {path}` "
                f"(or `python tools/port_timm_weights.py {spec.name} --out {path}`), which downloads timm's "
                f"pretrained {spec.timm_name!r} where timm publishes one (needs timm and a network), or add `--checkpoint FILE` with "
                "a timm checkpoint (.safetensors, .pth, .bin, .npz) you have. The directory is "
                "$KERAS_CONVZOO_HOME (default ~/.keras/convzoo)."
            )
        return "imagenet", path
    if spec.port_weights is not None and is_state_dict_path(weights):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(f"The weights file does not exist. Received: weights={path!r}")
        return "state_dict", path
    return "file", check_weights_path(weights)


def _apply_timm_config(spec, kwargs, weights):
    """Applies ``spec.timm_config``, refusing keyword arguments that contradict it."""
    for field, value in spec.timm_config.items():
        if field in kwargs and kwargs[field] != value:
            raise ValueError(
                f"weights={weights!r} holds timm's {spec.timm_name!r}, which {spec.entrypoint} reproduces "
                f"only with {field}={value!r} (applied automatically). Received: {field}={kwargs[field]!r}"
            )
    return spec.with_config(**spec.timm_config) if spec.timm_config else spec


def _load_without_top(model, spec, path, input_shape):
    """Loads the trunk of a full-model ImageNet weights file into a model without top (all or none)."""
    full_shape = (None,) * (len(input_shape) - 1) + (input_shape[-1],)
    full = build_application(spec, include_top=True, input_shape=full_shape, classifier_activation=None)
    _load_weights(full, path, True, 1000, input_shape)
    updates = []
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source = full.get_layer(layer.name)
        except ValueError:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has no counterpart in the ImageNet weights file {path!r}.",
                layer=layer.name,
            ) from None
        values = source.get_weights()
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(int(d) for d in w.shape) for w in layer.weights]
        if shapes != wanted:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has weight shapes {wanted} but the ImageNet weights file {path!r} "
                f"gives {shapes}. No weight was changed.",
                layer=layer.name,
            )
        updates.append((layer, values))
    for layer, values in updates:
        layer.set_weights(values)


def _check_activation(classifier_activation):
    if classifier_activation is None or callable(classifier_activation):
        return
    if not isinstance(classifier_activation, str):
        raise TypeError(
            "`classifier_activation` must be None, a str or a callable. "
            f"Received: classifier_activation={classifier_activation!r}"
        )
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`classifier_activation` must name a Keras activation (e.g. 'softmax', "
            f"'sigmoid', 'linear') or be None. Received: classifier_activation={classifier_activation!r}"
        ) from error


def _resolve_input_shape(spec, input_shape, input_tensor, include_top):
    ranks = sorted({d + 1 for d in spec.accepted_spatial_dims or (spec.spatial_dims,)})
    wanted = " or ".join(str(r) for r in ranks)
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape)[1:]
    if input_shape is None:
        return spec.input_shape_at(spec.default_size if include_top else None)
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(
            f"`input_shape` must be a tuple of {wanted} entries (spatial sizes, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(None if v is None else v for v in input_shape)
    if len(input_shape) not in ranks:
        raise ValueError(
            f"`input_shape` must have {wanted} entries (spatial sizes and the channels, "
            f"channels_last) for {spec.entrypoint}. Received: input_shape={input_shape}"
        )
    *spatial, channels = input_shape
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"The channel count (last entry of `input_shape`) must be a positive int. "
            f"Received: input_shape={input_shape}"
        )
    for size in spatial:
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"Spatial sizes must be ints or None. Received: input_shape={input_shape}")
        if size < spec.min_size:
            raise ValueError(
                f"Input size must be at least {spec.min_size} for {spec.entrypoint}. "
                f"Received: input_shape={input_shape}"
            )
    return input_shape


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


def make_entrypoint(spec, doc, module):
    """Creates a public constructor with keras.applications' ResNet50 signature.

    ``ResNeXt50 = make_entrypoint(SPEC, doc, __name__)`` gives a function
    ``ResNeXt50(include_top=True, weights=None, input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **kwargs)`` whose body is
    ``build_application(spec, ...)``: one definition of the signature for
    every family that uses it.

    Args:
        spec: the variant's ``ModelSpec``.
        doc: the docstring (variant, parameter count, paper, example).
        module: ``__name__`` of the module that exposes it.

    Returns:
        The constructor.
    """

    def entrypoint(
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
        return build_application(spec, **entrypoint_arguments(locals()))

    entrypoint.__name__ = entrypoint.__qualname__ = spec.entrypoint
    entrypoint.__doc__ = doc + _ARGS_DOC
    entrypoint.__module__ = module
    return entrypoint


_ARGS_DOC = """
    Args:
        include_top: whether to add the classifier (global average pooling,
            ``Dense(classes, name="predictions")``).
        weights: None (random initialisation), ``"imagenet"`` (timm's
            weights, ported once by ``convzoo port-timm NAME`` to
            ``$KERAS_CONVZOO_HOME/NAME.weights.h5``; nothing is downloaded
            here), the path to a ``.weights.h5`` file saved from the same
            architecture, or, for families with a porter (the timm ones;
            CCNN: the official checkpoints), a state dict file
            (``.safetensors``, ``.pth``, ``.bin``, ``.npz``).
        input_tensor: optional Keras tensor to use as the model input.
        input_shape: shape without batch, e.g. ``(224, 224, 3)`` or
            ``(None, None, 3)``; default ``(224, 224, 3)`` with the top and
            ``(None, None, 3)`` without.
        pooling: with ``include_top=False``: None (4D feature map),
            ``"avg"`` or ``"max"``.
        classes: number of classes (with ``include_top=True``).
        classifier_activation: activation of the classifier; None for logits.
        name: model name (default: the registry name).
        **kwargs: overrides of the family config, e.g. ``drop_rate=0.2``.

    Returns:
        A ``keras.Model``.
"""
