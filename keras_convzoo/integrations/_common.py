"""What the keras-cv and keras-hub adapters share: pyramid levels, the trunk build, dtype policies."""

import importlib
import os
import re
import sys

from keras_convzoo.applications.features import trunk_and_feature_info
from keras_convzoo.backend import LEGACY_KERAS, dtype_policy_scope, keras

#: Variable / compute dtypes a backbone's dtype policy may name (the zoo layers are floating point).
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Layer classes a quantized policy applies to (Keras quantizes exactly these, not subclasses).
_QUANTIZABLE = ("Dense", "EinsumDense")

#: Pyramid levels the adapters expose: ``Pn`` is the deepest stage of stride ``2**n``.
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")

#: Builder arguments an adapter does not take: it builds the trunk itself
#: (no classifier, no pooling) and must be re-creatable from its config.
_REFUSED = ("include_top", "pooling", "classes", "classifier_activation", "input_tensor", "name")


def import_optional(module, pip_name, version):
    """Imports keras-cv / keras-hub, or raises an ImportError naming the pip command.

    keras-cv picks Keras 2 or 3 by what ``tf.keras`` resolves to, which
    tensorflow-model-optimization switches to tf_keras (it sets
    ``TF_USE_LEGACY_KERAS=1`` when imported). Under Keras 3 the first import
    therefore runs with ``TF_USE_LEGACY_KERAS=0`` (restored afterwards).
    """
    if LEGACY_KERAS:
        raise RuntimeError(
            f"The {pip_name} adapter needs Keras 3; this process runs keras_convzoo on tf_keras "
            "(TF_USE_LEGACY_KERAS=1). Run it without TF_USE_LEGACY_KERAS."
        )
    if sys.modules.get(module) is not None:
        return sys.modules[module]
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    os.environ["TF_USE_LEGACY_KERAS"] = "0"
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"This adapter needs {pip_name}: `pip install {pip_name}=={version}` "
            f"(or `pip install keras_convzoo[ecosystem]`). Import failed with: {error}"
        ) from error
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved


def check_model_kwargs(adapter, model_kwargs):
    """Refuses builder arguments an adapter sets itself."""
    refused = sorted(set(model_kwargs) & set(_REFUSED))
    if refused:
        raise TypeError(
            f"{adapter} builds the trunk itself (include_top=False, no pooling, its own input and "
            f"name); it does not take {refused}. Pass `input_shape`, `weights` and the family "
            "options (e.g. depths=..., drop_path_rate=...)."
        )


def build_trunk(model_name, input_shape, model_kwargs, dtype=None):
    """The zoo trunk and its pyramid levels, every layer under the dtype policy ``dtype``.

    The layers take their policy when they are constructed, so the trunk is
    built while ``dtype`` (its float form: a quantized policy is applied to
    the built layers, after any weights are loaded) is the global policy,
    which is restored afterwards. Under a ``DTypePolicyMap`` every layer
    looks up its policy by ``layer.path`` (as in keras-hub's backbones);
    the Dense / EinsumDense layers it maps to a quantized policy are then
    quantized from their float weights.

    Args:
        model_name: registry name.
        input_shape: input shape without batch, or None.
        model_kwargs: other builder arguments.
        dtype: None (the global policy), or a policy accepted by
            ``check_dtype``.

    Returns:
        ``(trunk, pyramid, policy)``: the ``keras.Model``, ``{level:
        FeatureInfo}`` for the levels P2..P5 the model has, and the policy
        applied (None for ``dtype=None``; a plain quantized policy such as
        ``"int8_from_float32"`` becomes the ``DTypePolicyMap`` with it on
        every Dense / EinsumDense layer), which the backbone records.

    Raises:
        TypeError / ValueError: for a bad name or dtype (see ``check_dtype``).
    """
    if not isinstance(model_name, str):
        raise TypeError(f"`name` must be a registry name (str). Received: name={model_name!r}")
    shape = None if input_shape is None else tuple(input_shape)
    policy = check_dtype(dtype)
    if policy is None:
        trunk, info = trunk_and_feature_info(model_name, input_shape=shape, **model_kwargs)
        return trunk, pyramid_levels(info), None
    with dtype_policy_scope(_float_policy(policy)):
        trunk, info = trunk_and_feature_info(model_name, input_shape=shape, **model_kwargs)
    if not isinstance(policy, keras.dtype_policies.DTypePolicyMap) and policy.quantization_mode is not None:
        policy = _map_of_quantizable_layers(trunk, policy, model_name)
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        _apply_quantized_entries(trunk, policy)
    return trunk, pyramid_levels(info), policy


def _map_of_quantizable_layers(trunk, policy, model_name):
    """``policy`` (quantized) on every Dense / EinsumDense layer of the trunk, its float form elsewhere."""
    from keras_convzoo.export.lowering import iter_layers

    layers = [layer for layer in iter_layers(trunk) if layer is not trunk and _quantizable(layer)]
    if not layers:
        raise ValueError(
            f"`dtype` {policy.name!r} quantizes Dense and EinsumDense layers; the {model_name!r} backbone has none "
            "(its convolutions stay float). Use a float policy, or a DTypePolicyMap on the layers to quantize. "
            f"Received: dtype={policy.name!r}"
        )
    policy_map = keras.dtype_policies.DTypePolicyMap(default_policy=_float_policy(policy))
    for layer in layers:
        policy_map[layer.path] = policy
    return policy_map


def _quantizable(layer):
    """Whether Keras quantizes this layer (exactly Dense or EinsumDense, not subclasses)."""
    name = type(layer).__name__
    return name in _QUANTIZABLE and type(layer) is getattr(keras.layers, name)


def as_specs(model, inputs):
    """``inputs`` with every array (numpy, backend tensor) replaced by a ``keras.KerasTensor`` of its shape.

    keras' ``Functional.compute_output_spec`` hands its inputs to each
    layer's ``compute_output_spec`` unchanged, and a layer reads the shapes
    of its tensor arguments only: a numpy array reaches e.g.
    ``ZeroPadding2D.compute_output_shape`` as ``input_shape=None``. The specs
    take the dtype of the model's input (what calling the model converts to).
    """
    dtype = model.inputs[0].dtype
    return keras.tree.map_structure(
        lambda x: x if isinstance(x, keras.KerasTensor) else keras.KerasTensor(tuple(x.shape), dtype), inputs
    )


def check_dtype(dtype):
    """The ``keras.DTypePolicy`` (or ``DTypePolicyMap``) that a backbone's ``dtype`` argument names.

    Args:
        dtype: None, a policy name (``"float32"``, ``"mixed_float16"``,
            ``"mixed_bfloat16"``, ``"bfloat16"``, ``"int8_from_float32"``
            ...), a serialized policy (dict), a ``keras.DTypePolicy`` or a
            ``keras.dtype_policies.DTypePolicyMap`` keyed by layer paths.

    Returns:
        None for None, else the policy.

    Raises:
        TypeError: ``dtype`` is of another type.
        ValueError: ``dtype`` names no policy, or a policy (or map entry)
            that is not floating point.

    Example:
    >>> check_dtype("mixed_bfloat16").compute_dtype
    'bfloat16'
    """
    if dtype is None:
        return None
    if not isinstance(dtype, (str, dict, keras.DTypePolicy)):
        raise TypeError(
            "`dtype` must be None, a dtype policy name (str), a keras.DTypePolicy or a "
            f"keras.dtype_policies.DTypePolicyMap. Received: dtype={dtype!r} of type {type(dtype).__name__}"
        )
    allowed = "e.g. 'float32', 'mixed_float16', 'mixed_bfloat16', 'bfloat16', 'int8_from_float32'"
    try:
        policy = keras.dtype_policies.get(dtype)
    except (ValueError, TypeError):
        raise ValueError(f"`dtype` must name a Keras dtype policy ({allowed}). Received: dtype={dtype!r}") from None
    entries = [policy]
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        try:
            mapped = _map_entries(policy)
        except (ValueError, TypeError):
            raise ValueError(
                f"`dtype` maps a layer path to something that names no Keras dtype policy ({allowed}). "
                f"Received: dtype={describe_dtype(policy)}"
            ) from None
        if any(mapped[key] is not policy[key] for key in policy):
            # DTypePolicyMap's constructor keeps values as given (e.g. names); Keras reads policies
            policy = keras.dtype_policies.DTypePolicyMap(default_policy=policy.default_policy, policy_map=mapped)
        entries = [policy.default_policy, *mapped.values()]
    for entry in entries:
        if entry.variable_dtype not in _FLOAT_DTYPES or entry.compute_dtype not in _FLOAT_DTYPES:
            raise ValueError(
                f"`dtype` must be a floating point policy ({allowed}); {entry.name!r} computes in "
                f"{entry.compute_dtype} with {entry.variable_dtype} variables. Received: dtype={describe_dtype(dtype)}"
            )
    return policy


def describe_dtype(dtype):
    """A one-line description of a ``dtype`` argument for messages (a map lists its entries)."""
    if isinstance(dtype, keras.dtype_policies.DTypePolicyMap):
        entries = {key: getattr(dtype[key], "name", dtype[key]) for key in dtype}
        return f"DTypePolicyMap(default_policy={dtype.default_policy.name!r}, {entries})"
    return repr(dtype)


def _map_entries(policy_map):
    """``{key: DTypePolicy}`` of a map (its constructor keeps values such as policy names as given)."""
    return {key: keras.dtype_policies.get(policy_map[key]) for key in policy_map}


def _float_policy(policy):
    """``policy`` without quantization: the float policy a quantized one is taken from (maps: entrywise)."""
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        return keras.dtype_policies.DTypePolicyMap(
            default_policy=_float_policy(policy.default_policy),
            policy_map={key: _float_policy(entry) for key, entry in _map_entries(policy).items()},
        )
    if policy.quantization_mode is None:
        return policy
    compute, variable = policy.compute_dtype, policy.variable_dtype
    return keras.DTypePolicy(variable if compute == variable else f"mixed_{compute}")


def _apply_quantized_entries(trunk, policy_map):
    """Quantizes, from their float weights, the trunk layers that ``policy_map`` gives a quantized policy.

    Every key must match a layer path; a quantized policy must fall on a
    Dense or EinsumDense layer (the layers Keras quantizes).
    """
    from keras_convzoo.export.lowering import iter_layers

    layers = [layer for layer in iter_layers(trunk) if layer is not trunk and layer.path]
    paths = [layer.path for layer in layers]
    unmatched = [key for key in policy_map if not any(key == path or _fullmatch(key, path) for path in paths)]
    if unmatched:
        raise ValueError(
            f"`dtype` maps layer paths that are not in this backbone: {unmatched} (keys are layer paths such as "
            f"{paths[0]!r}, or regular expressions over them). Received: dtype={describe_dtype(policy_map)}"
        )
    for layer in layers:
        wanted = keras.dtype_policies.get(policy_map[layer.path])
        if wanted.quantization_mode is None or layer.quantization_mode == wanted.quantization_mode:
            continue
        if not _quantizable(layer):
            raise ValueError(
                f"`dtype` maps the {type(layer).__name__} layer {layer.path!r} to {wanted.name!r}; quantized policies "
                f"apply to {' and '.join(_QUANTIZABLE)} layers only. Received: dtype={describe_dtype(policy_map)}"
            )
        # The layer holds the shared float map; pin its float policy so that quantize() records
        # "<mode>_from_<float policy>" for it (Dense.quantize names the new policy after the layer's own).
        layer._dtype_policy = _float_policy(wanted)
        layer.quantize(wanted.quantization_mode)


def _fullmatch(pattern, path):
    try:
        return re.fullmatch(pattern, path) is not None
    except re.error:
        return False


def pyramid_levels(info):
    """``{"Pn": FeatureInfo}``: for each level, the deepest stage of stride ``2**n``.

    Args:
        info: ``FeatureInfo`` tuple in network order.

    Returns:
        A dict over the levels of ``PYRAMID_LEVELS`` the model has (CCNN,
        which keeps the resolution, has none).
    """
    levels = {}
    for level in PYRAMID_LEVELS:
        stride = 2 ** int(level[1:])
        matching = [i for i in info if i.stride == stride]
        if matching:
            levels[level] = matching[-1]
    return levels


def config_kwargs(model_kwargs):
    """The model arguments kept in a backbone's config (a weights path is not: saved weights are)."""
    return {k: v for k, v in model_kwargs.items() if k != "weights"}
