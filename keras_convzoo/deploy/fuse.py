"""Inference fusion: fold every BatchNormalization that follows a convolution into it."""

import numpy as np

from keras_convzoo.backend import keras
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.reparam_large_kernel_conv import ReparamLargeKernelConv
from keras_convzoo.ops.batch_norm import bn_inference_affine

_CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "GroupConv2D")


def _reparameterisable(layer):
    """Layers with a training form and a merged ``deploy=True`` form."""
    return getattr(layer, "deploy", None) is False and hasattr(layer, "merged_weights")


def _is_reference(item):
    return (
        isinstance(item, (list, tuple))
        and len(item) in (3, 4)
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and isinstance(item[2], int)
    )


def _references(node):
    """Yields every ``[layer_name, node_index, tensor_index]`` in a config fragment."""
    if _is_reference(node):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _references(value)


def _rename(node, mapping):
    if _is_reference(node) and node[0] in mapping:
        return type(node)([mapping[node[0]]] + list(node[1:]))
    if isinstance(node, dict):
        return {k: _rename(v, mapping) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_rename(v, mapping) for v in node)
    return node


def _fold(conv, bn):
    """Returns ``[kernel, bias]`` of ``conv`` with the inference BN ``bn`` folded in."""
    weights = conv.get_weights()
    kernel = weights[0]
    scale, shift = bn_inference_affine(bn)
    bias = weights[1] if len(weights) > 1 else np.zeros_like(scale)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return [kernel.astype(weights[0].dtype), (bias * scale + shift).astype(weights[0].dtype)]


def _foldable_pairs(model, layers_config, output_refs):
    """Maps BN layer name -> conv layer name for convs whose only consumer is that BN."""
    uses = {}
    for entry in layers_config:
        for ref in _references(entry.get("inbound_nodes", [])):
            uses.setdefault(ref[0], []).append(entry["config"]["name"])
    for ref in _references(output_refs):
        uses.setdefault(ref[0], []).append(None)
    pairs = {}
    for entry in layers_config:
        if entry["class_name"] != "BatchNormalization":
            continue
        bn = model.get_layer(entry["config"]["name"])
        producers = {ref[0] for ref in _references(entry.get("inbound_nodes", []))}
        if len(producers) != 1 or bn.axis not in (-1, [-1], [len(bn.input.shape) - 1]):
            continue
        producer = producers.pop()
        conv = model.get_layer(producer)
        if type(conv).__name__ not in _CONV_CLASSES or uses.get(producer) != [bn.name]:
            continue
        if getattr(conv, "activation", None) not in (None, keras.activations.linear):
            continue
        pairs[bn.name] = producer
    return pairs


def fuse(model):
    """Returns a new inference model with every conv -> BatchNormalization pair merged.

    A BN is folded into the convolution that feeds it (``Conv1D/2D/3D``,
    ``DepthwiseConv2D`` or ``layers.GroupConv2D``) when that convolution has
    no activation and no other consumer: ``W' = W * gamma / sqrt(var + eps)``,
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``. The BN layers
    disappear from the graph; every other layer keeps its name and weights.
    The result is for inference (BN statistics are frozen into the weights).
    Re-parameterisable layers (``layers.ReparamLargeKernelConv``) are
    switched to their merged ``deploy=True`` form.

    Args:
        model: a functional Keras model (Keras 3 or tf_keras).

    Returns:
        A new ``keras.Model`` with the same inputs and outputs.

    Raises:
        TypeError: when ``model`` is not a functional model.

    Example:
    >>> model = keras_convzoo.ResNeXt50()
    >>> fused = keras_convzoo.deploy.fuse(model)
    >>> len(fused.layers) < len(model.layers)
    True
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise TypeError(f"`model` must be a functional keras.Model. Received: {type(model).__name__}")
    try:
        config = model.get_config()
    except NotImplementedError as error:
        raise TypeError("`model` must be a functional keras.Model (subclassed models have no graph config).") from error
    if "layers" not in config or "output_layers" not in config:
        raise TypeError("`model` must be a functional keras.Model (its config has no layer graph).")
    pairs = _foldable_pairs(model, config["layers"], config["output_layers"])
    layers = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in pairs:
            continue
        entry = _rename(entry, pairs)
        if name in pairs.values():
            entry["config"]["use_bias"] = True
        if _reparameterisable(model.get_layer(name)):
            entry["config"]["deploy"] = True
        layers.append(entry)
    config["layers"] = layers
    config["output_layers"] = _rename(config["output_layers"], pairs)
    custom = {"GroupConv2D": GroupConv2D, "ReparamLargeKernelConv": ReparamLargeKernelConv}
    fused = keras.Model.from_config(config, custom_objects=custom)
    conv_to_bn = {conv: bn for bn, conv in pairs.items()}
    for layer in fused.layers:
        if not layer.weights:
            continue
        source = model.get_layer(layer.name)
        if layer.name in conv_to_bn:
            layer.set_weights(_fold(source, model.get_layer(conv_to_bn[layer.name])))
        elif _reparameterisable(source):
            layer.set_weights(source.merged_weights())
        else:
            layer.set_weights(source.get_weights())
    return fused
