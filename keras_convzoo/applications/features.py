"""Multi-scale feature extraction: the named stage outputs of any registered model.

``create_feature_extractor`` turns a registry name, or a model built by
keras_convzoo, into a Keras model whose output is a dict ``{stage: tensor}``
(for detection / segmentation necks such as FPN), and records each output's
channels and stride (reduction of the input size).

The stage names are the ones each family's ``spec.body`` returns (e.g.
``stem``, ``stage1`` .. ``stage4`` for ResNeXt / SE-ResNet; ``stem``,
``stage1`` .. ``stage7``, ``head`` for MobileNetV2; ``stem``, ``block1`` ..
for CCNN), so the registry stays the one source of truth.
"""

import dataclasses
import functools
import re

from keras_convzoo.applications._builder import build_application
from keras_convzoo.applications._registry import get_spec, list_models
from keras_convzoo.backend import LEGACY_KERAS, keras

#: Spatial side of the symbolic probe input the strides are measured with.
#: A power of two, so every stride (a power of two) divides it exactly.
_PROBE_SIZE = 512

#: Builder arguments that would put something other than the trunk on top.
_TOP_ARGS = ("include_top", "pooling", "classes", "classifier_activation")


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """Description of one output of a feature extractor.

    Attributes:
        name: stage name, the key of the output dict (e.g. ``"stage2"``).
        layer: name of the layer whose output the stage is
            (e.g. ``"stage2_block4_out"``).
        channels: channels of the output (last axis).
        stride: reduction of the spatial size relative to the input
            (e.g. 8: a 224x224 image gives a 28x28 map); 1 for models that
            keep the resolution (CCNN).
    """

    name: str
    layer: str
    channels: int
    stride: int


def create_feature_extractor(model_or_name, stages=None, input_shape=None, **kwargs):
    """Creates a model that returns the multi-scale stage outputs of a zoo model.

    The returned model maps the input images to a dict ``{stage name:
    feature map}`` in network order (shallow to deep). It shares its layers
    (and weights) with the trunk it is built from, so it can be fine-tuned,
    used as the backbone of a detector, or exported like any Keras model.

    Metadata is attached as attributes:
    ``feature_info`` (a tuple of ``FeatureInfo(name, layer, channels,
    stride)``, one per output, in output order), ``feature_channels``
    (``{stage: channels}``), ``feature_strides`` (``{stage: stride}``) and
    ``feature_layers`` (``{stage: layer name}``). The attributes are not part
    of a saved ``.keras`` file; recreate the extractor to get them back.

    Args:
        model_or_name: a registry name (see ``list_models()``), built with
            ``include_top=False``, or a ``keras.Model`` built by
            keras_convzoo (its stage layers are found by their deterministic
            names; a model built with ``include_top=True`` works too, its
            head is left out).
        stages: None (every stage of the family) or a list/tuple of stage
            names, e.g. ``["stage2", "stage3", "stage4"]``. The outputs keep
            the order given.
        input_shape: with a registry name, the input shape without the batch
            axis; default ``(None, None, channels)`` (any size). Must be None
            with a model (the model's input is used).
        **kwargs: with a registry name, the other builder arguments
            (``weights``, ``input_tensor``, ``name`` of the trunk) and the
            family config fields (e.g. ``depths``); ``include_top`` must be
            False and ``pooling`` None. With a model, only ``model_name``:
            the registry name of a model that was built under another
            ``name=``.

    Returns:
        A ``keras.Model`` with a dict output, carrying ``feature_info``,
        ``feature_channels``, ``feature_strides`` and ``feature_layers``.

    Raises:
        ValueError: for an unknown stage (naming the allowed ones), an
            unknown registry name, ``include_top=True``, a ``pooling``, an
            ``input_shape`` given with a model, or a model keras_convzoo did
            not build.
        TypeError: for a wrongly typed argument or an unknown keyword.

    Example:
    >>> import numpy as np
    >>> from keras_convzoo.applications import create_feature_extractor
    >>> extractor = create_feature_extractor("resnext50_32x4d", stages=["stage2", "stage3", "stage4"])
    >>> features = extractor(np.zeros((1, 224, 224, 3), "float32"))
    >>> {k: tuple(v.shape) for k, v in features.items()}
    {'stage2': (1, 28, 28, 512), 'stage3': (1, 14, 14, 1024), 'stage4': (1, 7, 7, 2048)}
    >>> extractor.feature_strides
    {'stage2': 8, 'stage3': 16, 'stage4': 32}
    """
    trunk, layers = _resolve(model_or_name, input_shape, kwargs)
    extractor, info = _extractor(trunk, _select(layers, stages))
    extractor.feature_info = info
    extractor.feature_channels = {i.name: i.channels for i in info}
    extractor.feature_strides = {i.name: i.stride for i in info}
    extractor.feature_layers = {i.name: i.layer for i in info}
    return extractor


def trunk_and_feature_info(model_or_name, input_shape=None, **kwargs):
    """The trunk and the ``FeatureInfo`` of all its stages (for the integrations).

    Same arguments as ``create_feature_extractor``.

    Returns:
        ``(trunk, info)``: the ``keras.Model`` (built with
        ``include_top=False`` for a registry name) and a tuple of
        ``FeatureInfo`` in network order.
    """
    trunk, layers = _resolve(model_or_name, input_shape, kwargs)
    _, info = _extractor(trunk, layers)
    return trunk, info


def _resolve(model_or_name, input_shape, kwargs):
    """``(trunk, {stage: layer name})`` of a registry name or a zoo model."""
    if isinstance(model_or_name, str):
        return _build_trunk(model_or_name, input_shape, kwargs)
    if isinstance(model_or_name, keras.Model):
        if input_shape is not None:
            raise ValueError(
                "`input_shape` is only used with a registry name; a model keeps its own input. "
                f"Received: input_shape={input_shape!r}"
            )
        return model_or_name, _layers_of_model(model_or_name, kwargs)
    raise TypeError(
        "`model_or_name` must be a registry name (str, see keras_convzoo.list_models()) or a "
        f"keras.Model built by keras_convzoo. Received: {type(model_or_name).__name__}"
    )


def _extractor(trunk, layers):
    """The dict-output model over ``layers`` and its ``FeatureInfo`` tuple."""
    if len(trunk.inputs) != 1:
        raise ValueError(
            f"Feature extraction needs a model with one input; {trunk.name!r} has {len(trunk.inputs)}."
        )
    outputs = {stage: trunk.get_layer(layer).output for stage, layer in layers.items()}
    extractor = keras.Model(trunk.inputs[0], outputs, name=f"{trunk.name}_features")
    strides = _measure_strides(extractor, trunk.inputs[0].shape, list(layers))
    info = tuple(
        FeatureInfo(stage, layer, int(outputs[stage].shape[-1]), strides[stage]) for stage, layer in layers.items()
    )
    return extractor, info


def _build_trunk(name, input_shape, kwargs):
    """Builds ``name`` without top through the shared builder; returns ``(model, {stage: layer})``."""
    spec = get_spec(name)
    for arg in _TOP_ARGS:
        if arg not in kwargs:
            continue
        value = kwargs[arg]
        if arg == "include_top" and value is False or arg == "pooling" and value is None:
            continue
        raise ValueError(
            "create_feature_extractor builds the trunk without classifier or pooling, so "
            f"include_top must be False and pooling None (classes and classifier_activation are not "
            f"used). Received: {arg}={value!r}"
        )
    kwargs = {k: v for k, v in kwargs.items() if k not in _TOP_ARGS}
    model = build_application(spec, include_top=False, input_shape=input_shape, pooling=None, **kwargs)
    return model, dict(model.convzoo_stages)  # the stage outputs the builder kept from the body


def _layers_of_model(model, kwargs):
    """``{stage: layer}`` of a model built by keras_convzoo, found by its layer names."""
    unknown = sorted(set(kwargs) - {"model_name"})
    if unknown:
        raise TypeError(
            f"With a model, create_feature_extractor only takes `model_name` as extra keyword. "
            f"Received: {unknown}"
        )
    stages = getattr(model, "convzoo_stages", None)  # built by the builder: its stage outputs
    names = {layer.name for layer in model.layers}
    if stages and "model_name" not in kwargs and all(layer in names for layer in stages.values()):
        return dict(stages)
    registry_name = kwargs.get("model_name", model.name)
    if registry_name not in list_models():
        raise ValueError(
            f"Cannot tell which keras_convzoo architecture the model {model.name!r} is: its name is "
            "not a registry name. Pass model_name='<registry name>' (e.g. model_name='resnext50_32x4d'), "
            "or pass the registry name instead of the model."
        )
    prefixes = _stage_prefixes(registry_name)
    found = {}
    for index, layer in enumerate(model.layers):
        head = layer.name.split("_", 1)[0]
        match = re.fullmatch(r"([a-z]+)(\d*)", head)
        if match and (match.group(1), bool(match.group(2))) in prefixes:
            found[head] = (index, layer.name)  # the last layer of a stage is its output
    if not found:
        raise ValueError(
            f"The model {model.name!r} has no layer named like the stages of {registry_name!r} "
            f"({sorted(p for p, _ in prefixes)}...); was it built by keras_convzoo?"
        )
    return {stage: layer for stage, (_, layer) in sorted(found.items(), key=lambda item: item[1][0])}


@functools.lru_cache(maxsize=None)
def _stage_prefixes(registry_name):
    """Stage name patterns of a family as ``{(letters, numbered)}``, read from its tiny twin."""
    spec = get_spec(registry_name)
    size = max(spec.min_size, 32)
    _, layers = _build_trunk(
        registry_name,
        spec.input_shape_at(size),
        dict(spec.test_overrides),
    )
    prefixes = set()
    for stage in layers:
        match = re.fullmatch(r"([a-z]+)(\d*)", stage)
        if match is None:  # pragma: no cover - every family uses such names
            raise ValueError(f"Unexpected stage name {stage!r} in {registry_name!r}.")
        prefixes.add((match.group(1), bool(match.group(2))))
    return frozenset(prefixes)


def _select(layers, stages):
    if stages is None:
        return dict(layers)
    if isinstance(stages, str) or not isinstance(stages, (list, tuple)):
        raise TypeError(
            f"`stages` must be None or a list/tuple of stage names from {list(layers)}. Received: stages={stages!r}"
        )
    unknown = [s for s in stages if s not in layers]
    if unknown or not stages:
        raise ValueError(
            f"`stages` must name stages of this model; allowed: {list(layers)}. Received: stages={list(stages)!r}"
        )
    if len(set(stages)) != len(stages):
        raise ValueError(f"`stages` names a stage twice. Received: stages={list(stages)!r}")
    return {s: layers[s] for s in stages}


def _measure_strides(extractor, input_shape, stages):
    """``{stage: stride}`` of every output, from shapes only (no computation, no new graph nodes).

    With ``None`` spatial sizes the extractor's output shapes are computed
    for a symbolic ``_PROBE_SIZE`` input, which every (power of two) stride
    divides. With a fixed input size, the stride is the smallest power of
    two at least ``input size / output size`` (exact for "same" and
    symmetric padding, which round output sizes up).
    """
    spatial = tuple(input_shape[1:-1])
    if all(size is not None for size in spatial):
        shapes = {stage: tuple(extractor.output[stage].shape) for stage in stages}
        return {stage: _power_of_two_at_least(spatial[0] / shapes[stage][1]) for stage in stages}
    probe = (1,) + (_PROBE_SIZE,) * len(spatial) + (input_shape[-1],)
    if LEGACY_KERAS:
        output_shapes = extractor.compute_output_shape(probe)
        shapes = {stage: tuple(output_shapes[stage]) for stage in stages}
    else:
        output_spec = extractor.compute_output_spec(keras.KerasTensor(probe))
        shapes = {stage: tuple(output_spec[stage].shape) for stage in stages}
    return {stage: max(1, int(round(_PROBE_SIZE / shapes[stage][1]))) for stage in stages}


def _power_of_two_at_least(ratio):
    stride = 1
    while stride < ratio - 1e-9:
        stride *= 2
    return stride
