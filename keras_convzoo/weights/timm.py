"""Porting PyTorch state dicts (timm, torchvision) onto zoo models by their layer names.

Generic machinery only: which checkpoint module each of our layers reads is
declared by the family, in its own module, as a ``KeyMap`` inside
``ModelSpec.weight_formats`` (``"timm"``, ``"torchvision"``);
``port_state_dict`` reads that declaration, converts the arrays and assigns
all of them or none.

Array layouts: convolution kernels ``(out, in/groups, kh, kw)`` become
``(kh, kw, in/groups, out)`` (Conv2D and GroupConv2D), depthwise kernels
``(C, 1, kh, kw)`` become ``(kh, kw, C, 1)``, linear weights are transposed,
BatchNorm ``weight/bias/running_mean/running_var`` become
``gamma/beta/moving_mean/moving_variance``.

Nothing here imports torch: torch tensors are converted through their own
``.numpy()``; ``read_state_dict`` reads ``.safetensors``, ``.npz`` and
``.pth`` files with numpy.

Nothing here knows the registry or builds a model: ``port_timm`` (a model's
family found by its name) and ``convert_timm_weights`` (a model built by
name) live in the applications package (``applications/porting.py``), above
this package.
"""

import numpy as np

from keras_convzoo.backend import keras
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.layer_scale import LayerScale
from keras_convzoo.progress import check_progress
from keras_convzoo.weights._moved import moved_attribute as _moved_attribute
from keras_convzoo.weights.loading import WeightsMismatchError
from keras_convzoo.weights.state_dict import to_numpy_state_dict

_PREFIXES = ("module.",)


def _check_layout(model, key_map, layer_names, source, hint):
    """Refuses models whose computation differs from the source's (padding, epsilons)."""
    problem = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not np.isclose(
            layer.epsilon, key_map.bn_epsilon, rtol=1e-3, atol=0
        ):
            problem = (f"layer {layer.name!r} has BatchNorm epsilon {layer.epsilon:g}; "
                       f"{source} uses {key_map.bn_epsilon:g}")
        elif (
            key_map.ln_epsilon is not None
            and isinstance(layer, keras.layers.LayerNormalization)
            and not np.isclose(layer.epsilon, key_map.ln_epsilon, rtol=1e-3, atol=0)
        ):
            problem = (f"layer {layer.name!r} has LayerNorm epsilon {layer.epsilon:g}; "
                       f"{source} uses {key_map.ln_epsilon:g}")
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, GroupConv2D)):
            kernel, stride = int(layer.kernel_size[0]), int(layer.strides[0])
            if stride == 1 or kernel == 1 or kernel == stride:  # no padding question
                continue
            pad = (kernel - 1) // 2
            pad_name = f"{layer.name}_pad"
            padding = None
            if pad_name in layer_names:
                padding = tuple(tuple(int(v) for v in side) for side in model.get_layer(pad_name).padding)
            if layer.padding != "valid" or padding != ((pad, pad), (pad, pad)):
                found = "TensorFlow's 'same' rule" if layer.padding == "same" else f"padding {padding}"
                problem = (
                    f"the strided layer {layer.name!r} pads with {found}, while {source}'s PyTorch convolution "
                    f"pads {pad} on every side"
                )
        if problem:
            raise WeightsMismatchError(
                f"Model '{model.name}' does not compute what {source}'s does: {problem}. No weight was changed."
                + hint,
                layer=layer.name,
                detail=problem,
            )


def _torch_to_keras(layer, key, array, kind):
    """Converts one checkpoint array to the layout of one of the layer's variables."""
    wanted_ndim = {"conv": 4, "depthwise": 4, "dense": 2}.get(kind, 1)
    if array.ndim != wanted_ndim:
        raise WeightsMismatchError(
            f"Layer {layer.name!r} ({type(layer).__name__}): checkpoint tensor {key!r} has shape "
            f"{tuple(array.shape)}, expected a {wanted_ndim}D array. No weight was changed.",
            layer=layer.name,
        )
    if kind == "conv":
        return array.transpose(2, 3, 1, 0)
    if kind == "depthwise":
        return array.transpose(2, 3, 0, 1)
    if kind == "dense":
        return array.T
    return array


def _layer_keys(layer, module):
    """``[(checkpoint key, kind)]`` for the layer's variables in order, and the keys used besides."""
    if isinstance(layer, keras.layers.BatchNormalization):
        keys = [(f"{module}.{k}", "vector") for k in ("weight", "bias", "running_mean", "running_var")]
        return keys, {f"{module}.num_batches_tracked"}
    if isinstance(layer, keras.layers.LayerNormalization):
        return [(f"{module}.weight", "vector"), (f"{module}.bias", "vector")], set()
    if isinstance(layer, LayerScale):
        return [(f"{module}.gamma", "vector")], set()
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # before Conv2D: a subclass in tf_keras
        kind = "depthwise"
    elif isinstance(layer, (keras.layers.Conv2D, GroupConv2D)):
        kind = "conv"
    elif isinstance(layer, keras.layers.Dense):
        kind = "dense"
    else:
        return None, set()
    keys = [(f"{module}.weight", kind)]
    if layer.use_bias:
        keys.append((f"{module}.bias", "vector"))
    return keys, set()


def _variable_name(variable):
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def _strip_prefix(state):
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def port_state_dict(model, state_dict, key_map, source="timm", progress=None, hint=""):
    """Loads a PyTorch state dict into a zoo model through its family's ``KeyMap`` (all or nothing).

    Before anything is written it checks that the model computes what the
    source's does (``key_map.bn_epsilon`` / ``ln_epsilon``, symmetric
    padding of every strided convolution), that every weighted layer has a
    counterpart, that every needed tensor is in the checkpoint with the
    right shape, and that every checkpoint tensor is used
    (``num_batches_tracked`` aside; ``key_map.head_prefixes``, and
    ``head_norm_prefixes`` when the model has no ``head_norm``, may be left
    out by a model built with ``include_top=False``). A ``module.`` prefix on
    every key (DataParallel) is removed; an input ``Normalization`` layer
    keeps its constants. On any mismatch the model is left unchanged.

    Args:
        model: a zoo model of the checkpoint's variant.
        state_dict: mapping of names to numpy arrays or torch tensors.
        key_map: the family's ``keras_convzoo.weights.KeyMap``.
        source: name of the source, for messages (``"timm"``).
        progress: optional ``progress(done, total)`` called per layer.
        hint: text appended to a layout error (how to build the model).

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the tensor and the
            layer of the first problem.
        TypeError: if ``state_dict`` is not a mapping.

    Example:
    >>> spec = keras_convzoo.get_spec("seresnet50")
    >>> port_state_dict(model, state, spec.weight_formats["timm"].key_map)
    """
    state = _strip_prefix(to_numpy_state_dict(state_dict))
    layer_names = frozenset(layer.name for layer in model.layers)
    _check_layout(model, key_map, layer_names, source, hint)
    progress = check_progress(progress)
    updates, used = [], set()
    for index, layer in enumerate(model.layers):
        if progress is not None:
            progress(index + 1, len(model.layers))
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Normalization):  # input scaling constants, not learned
            continue
        module = key_map.module_name(layer.name, layer_names)
        keys, extra = (None, set()) if module is None else _layer_keys(layer, module)
        if keys is None:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no counterpart in {source}'s layout "
                "(a config option the source does not have?). No weight was changed.",
                layer=layer.name,
            )
        if len(keys) != len(layer.weights):
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has {len(layer.weights)} weights but {source}'s {module} has {len(keys)}. "
                "No weight was changed.",
                layer=layer.name,
            )
        arrays = []
        for variable, (key, kind) in zip(layer.weights, keys):
            if key not in state:
                raise WeightsMismatchError(
                    f"The checkpoint has no {key!r} (needed by layer {layer.name!r}): it is not a {source} "
                    f"checkpoint of this variant. No weight was changed.",
                    layer=layer.name,
                )
            array = _torch_to_keras(layer, key, state[key], kind)
            if tuple(array.shape) != tuple(int(d) for d in variable.shape):
                raise WeightsMismatchError(
                    f"Layer {layer.name!r} ({type(layer).__name__}): checkpoint tensor {key!r} of shape "
                    f"{tuple(state[key].shape)} gives {tuple(array.shape)} in Keras layout, but the layer's "
                    f"{_variable_name(variable)} has shape {tuple(variable.shape)}. No weight was changed.",
                    layer=layer.name,
                    detail=key,
                )
            arrays.append(np.asarray(array, np.float32))
        updates.append((layer, arrays))
        used |= {key for key, _ in keys} | extra
    skippable = ()
    if "predictions" not in layer_names:
        skippable = key_map.head_prefixes + (key_map.head_norm_prefixes if "head_norm" not in layer_names else ())
    unused = sorted(
        k for k in set(state) - used if not k.endswith("num_batches_tracked") and not k.startswith(skippable)
    )
    if unused:
        raise WeightsMismatchError(
            f"{len(unused)} checkpoint tensor(s) have no place in model '{model.name}', e.g. {unused[:5]}: "
            "the checkpoint is of another variant (depths, widths) or family. No weight was changed."
        )
    for layer, arrays in updates:
        if not all(np.isfinite(a).all() for a in arrays):
            raise WeightsMismatchError(
                f"The checkpoint holds non-finite values (NaN or inf) for layer {layer.name!r}. No weight was changed.",
                layer=layer.name,
            )
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return model


def __getattr__(name):
    """``port_timm`` and ``convert_timm_weights`` of the previous release (see ``weights._moved``)."""
    return _moved_attribute(__name__, name)
