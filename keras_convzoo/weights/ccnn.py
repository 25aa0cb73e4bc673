"""Loading state dicts of the official CCNN code (github.com/david-knigge/ccnn): its continuous convolutions.

The array conversions and checks of the official checkpoint format (MAGNet
kernel networks, masks, channel mixers, BatchNorm, Dense) live here; which
official module each of our layers reads is the family's key map
(``kcz.applications.ccnn.official_module_name``), handed in as
``module_name``. ``kcz.applications.port_ccnn`` joins the two.
"""

import numpy as np

from keras_convzoo.backend import keras
from keras_convzoo.layers.continuous_conv import ContinuousConvBase
from keras_convzoo.weights._moved import moved_attribute as _moved_attribute
from keras_convzoo.weights.loading import WeightsMismatchError
from keras_convzoo.weights.state_dict import to_numpy_state_dict

_PREFIXES = ("network.", "module.")


def _strip_prefix(state):
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _matrix(weight):
    """(out, in, 1, ...) pointwise conv weight -> (in, out) Dense kernel."""
    return weight.reshape(weight.shape[0], weight.shape[1]).T


def _continuous_conv_weights(layer, state, prefix):
    def take(name):
        if f"{prefix}.{name}" not in state:
            raise KeyError(f"{prefix}.{name}")
        return state[f"{prefix}.{name}"]

    if layer.kernel_network_type != "magnet":
        raise WeightsMismatchError(f"Layer {layer.name!r} uses a {layer.kernel_network_type!r} kernel network; "
                                   "official CCNN checkpoints hold MAGNets.", layer=layer.name)
    length = int(np.asarray(take("train_length")).reshape(-1)[0])
    if any(n != length for n in layer.grid_sizes):
        raise WeightsMismatchError(
            f"Layer {layer.name!r} has a kernel grid of {layer.grid_sizes} points but the checkpoint's "
            f"{prefix} was trained with {length}. Build the model with kernel_size={length}.",
            layer=layer.name,
        )
    if not bool(np.asarray(take("initialized")).reshape(-1)[0]):
        raise WeightsMismatchError(
            f"{prefix} was saved before its first forward pass (initialized=False): its kernel network's "
            "output layer lacks the sqrt(1/K) scaling. Save the checkpoint after one forward pass.",
            layer=layer.name,
        )
    mean = np.asarray(take("mask_mean_param"), np.float32)
    expected_mean = np.full_like(mean, 1.0 if layer.causal else 0.0)
    if not np.array_equal(mean, expected_mean):
        raise WeightsMismatchError(
            f"{prefix}.mask_mean_param is {mean}, expected {expected_mean} "
            f"(causal={layer.causal}); learned mask centres are not supported.",
            layer=layer.name,
        )
    threshold = float(np.asarray(take("mask_threshold")).reshape(-1)[0])
    if not np.isclose(threshold, layer.mask_threshold):
        raise WeightsMismatchError(
            f"{prefix}.mask_threshold is {threshold}; build the model with mask_threshold={threshold}.",
            layer=layer.name,
        )
    values = {
        "mask_width": take("mask_width_param"),
        "bias": take("bias"),
        "pointwise_kernel": _matrix(take("channel_mixer.weight")),
        "pointwise_bias": take("channel_mixer.bias"),
    }
    net = layer.kernel_network
    for i in range(net.num_layers + 1):
        f = f"Kernel.filters.{i}"
        values[f"filter{i}_gamma"] = take(f"{f}.gamma")
        values[f"filter{i}_mu"] = take(f"{f}.mu")
        values[f"filter{i}_kernel"] = _matrix(take(f"{f}.linear.weight"))
        values[f"filter{i}_bias"] = take(f"{f}.linear.bias")
    for i in range(net.num_layers):
        values[f"linear{i}_kernel"] = _matrix(take(f"Kernel.linears.{i}.weight"))
        values[f"linear{i}_bias"] = take(f"Kernel.linears.{i}.bias")
    values["output_kernel"] = _matrix(take("Kernel.output_linear.weight"))
    values["output_bias"] = take("Kernel.output_linear.bias")
    used = {
        f"{prefix}.{k}"
        for k in ("train_length", "initialized", "mask_mean_param", "mask_threshold", "mask_width_param", "bias",
                  "channel_mixer.weight", "channel_mixer.bias", "Kernel.output_linear.weight",
                  "Kernel.output_linear.bias")
    }
    used |= {k for k in state if k.startswith(f"{prefix}.Kernel.")}
    ordered = [values[_variable_name(v)] for v in layer.weights]
    return ordered, used


def _variable_name(variable):
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def _layer_weights(layer, state, prefix):
    if isinstance(layer, ContinuousConvBase):
        return _continuous_conv_weights(layer, state, prefix)
    if isinstance(layer, keras.layers.BatchNormalization):
        keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
        used = set(keys) | {f"{prefix}.num_batches_tracked"}
        return [state[k] for k in keys], used
    if isinstance(layer, keras.layers.Dense):
        keys = [f"{prefix}.weight", f"{prefix}.bias"]
        return [_matrix(state[keys[0]]), state[keys[1]]], set(keys)
    raise WeightsMismatchError(f"Layer {layer.name!r} ({type(layer).__name__}) has no official counterpart.", layer.name)


def port_official_state_dict(model, state_dict, module_name):
    """Loads a state dict of the official CCNN code into a model through a key map (all or nothing).

    ``module_name`` maps each of our layer names to its official PyTorch
    module (a Lightning checkpoint's ``network.`` prefix is removed);
    channels-first pointwise weights are transposed; the
    MAGNet parameters are copied as they are (their frequencies already hold
    ``2 pi omega_0 gamma`` and the output layer its sqrt(1/K) scaling).
    Checked before anything is written: every array's shape, the kernel
    grid (``train_length`` must equal the layer's grid: build with
    ``kernel_size=train_length``), the mask centre and threshold, and that
    every checkpoint tensor is used (``out_layer`` may be left out with
    ``include_top=False``). On any mismatch the model is left unchanged.

    Args:
        model: a model built with the checkpoint's configuration.
        state_dict: mapping of names to numpy arrays or torch tensors (see
            ``read_state_dict`` for files).
        module_name: ``module_name(layer_name)``: the official module prefix
            of a layer, None for a layer without counterpart.

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the first problem.

    Example:
    >>> port_official_state_dict(model, read_state_dict("ccnn_cifar10.safetensors"), kcz.applications.ccnn.official_module_name)
    """
    state = _strip_prefix(to_numpy_state_dict(state_dict))
    updates, used = [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = module_name(layer.name)
        if prefix is None:
            raise WeightsMismatchError(f"Layer {layer.name!r} has no official CCNN counterpart.", layer=layer.name)
        try:
            arrays, keys = _layer_weights(layer, state, prefix)
        except KeyError as error:
            raise WeightsMismatchError(
                f"The state dict has no {error.args[0]!r} (needed by layer {layer.name!r}).", layer=layer.name
            ) from None
        for variable, array in zip(layer.weights, arrays):
            if tuple(variable.shape) != tuple(array.shape):
                raise WeightsMismatchError(
                    f"Layer {layer.name!r}: {_variable_name(variable)} has shape {tuple(variable.shape)} but the "
                    f"checkpoint gives {tuple(array.shape)} (from {prefix}).",
                    layer=layer.name,
                )
        updates.append((layer, arrays))
        used |= keys
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = sorted(k for k in set(state) - used if has_top or not k.startswith("out_layer."))
    if unused:
        raise WeightsMismatchError(f"{len(unused)} checkpoint tensors have no place in the model, e.g. {unused[:5]}")
    for layer, arrays in updates:
        layer.set_weights([np.asarray(a, np.float32) for a in arrays])
    return model


def __getattr__(name):
    """``port_ccnn`` of the previous release (see ``weights._moved``)."""
    return _moved_attribute(__name__, name)
