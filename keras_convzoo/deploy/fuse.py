"""Inference fusion: fold BatchNormalizations into adjacent convolutions, merge re-parameterised layers."""

import numpy as np

from keras_convzoo.backend import keras
from keras_convzoo import layers as package_layers
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
    """Rewrites references: ``mapping[name]`` is a new layer name or a whole ``(name, node, tensor)``."""
    if _is_reference(node) and node[0] in mapping:
        target = mapping[node[0]]
        head = [target] + list(node[1:3]) if isinstance(target, str) else list(target[:3])
        return type(node)(head + list(node[3:]))
    if isinstance(node, dict):
        return {k: _rename(v, mapping) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_rename(v, mapping) for v in node)
    return node


def _fold_output_bn(kernel, bias, conv, bn):
    """``(kernel, bias)`` of ``conv`` followed by the inference BN ``bn``."""
    scale, shift = bn_inference_affine(bn)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return kernel, bias * scale + shift


def _fold_input_bn(kernel, bias, bn):
    """``(kernel, bias)`` of a pointwise (1x1, ungrouped) conv preceded by the inference BN ``bn``."""
    scale, shift = bn_inference_affine(bn)
    bias = bias + shift @ kernel.reshape(-1, kernel.shape[-1])
    return kernel * scale.reshape((1,) * (kernel.ndim - 2) + (-1, 1)), bias


def _is_plain_conv(layer):
    return type(layer).__name__ in _CONV_CLASSES and getattr(layer, "activation", None) in (
        None,
        keras.activations.linear,
    )


def _is_pointwise_conv(layer):
    return (
        type(layer).__name__ in ("Conv1D", "Conv2D", "Conv3D")
        and set(layer.kernel_size) == {1}
        and getattr(layer, "groups", 1) == 1
    )


def _normalises_last_axis(bn):
    axis = bn.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis == -1 or axis == len(bn.input.shape) - 1


def _foldable_bns(model, layers_config, output_refs):
    """Finds the BNs to fold.

    Returns:
        ``(after, before)``. ``after`` maps a BN name to the conv that feeds
        it, when that conv has no activation and no other consumer.
        ``before`` maps a BN name to ``(conv name, the BN's input reference)``
        when the BN's only consumer is a pointwise conv (BN -> 1x1 conv is
        exact: no zero padding sees the BN's shift), as RepLKNet's pre-norms.
    """
    uses = {}
    for entry in layers_config:
        for ref in _references(entry.get("inbound_nodes", [])):
            uses.setdefault(ref[0], []).append(entry["config"]["name"])
    for ref in _references(output_refs):
        uses.setdefault(ref[0], []).append(None)
    after, before = {}, {}
    for entry in layers_config:
        if entry["class_name"] != "BatchNormalization":
            continue
        bn = model.get_layer(entry["config"]["name"])
        inputs = list(_references(entry.get("inbound_nodes", [])))
        if len(inputs) != 1 or not _normalises_last_axis(bn):
            continue
        producer = inputs[0][0]
        if _is_plain_conv(model.get_layer(producer)) and uses.get(producer) == [bn.name]:
            after[bn.name] = producer
            continue
        consumers = uses.get(bn.name, [])
        if len(consumers) == 1 and consumers[0] is not None and _is_pointwise_conv(model.get_layer(consumers[0])):
            before[bn.name] = (consumers[0], inputs[0])
    return after, before


def _fused_weights(source, after, before, model):
    """Weights of ``source``'s fused counterpart, or None when nothing is folded into it."""
    folded_after = [bn for bn, conv in after.items() if conv == source.name]
    folded_before = [bn for bn, (conv, _) in before.items() if conv == source.name]
    if not folded_after and not folded_before:
        return None
    weights = source.get_weights()
    kernel = weights[0].astype("float32")
    bias = weights[1].astype("float32") if len(weights) > 1 else np.zeros(kernel.shape[-1], "float32")
    for bn in folded_before:
        kernel, bias = _fold_input_bn(kernel, bias, model.get_layer(bn))
    for bn in folded_after:
        kernel, bias = _fold_output_bn(kernel, bias, source, model.get_layer(bn))
    dtype = weights[0].dtype
    return [kernel.astype(dtype), bias.astype(dtype)]


def is_sequential(model):
    """True for a ``keras.Sequential`` (tf_keras' Sequential is also a Functional: test it first)."""
    return isinstance(model, keras.Sequential)


def is_graph_model(layer):
    """True for a model ``fuse`` can rebuild from its config: functional or Sequential.

    Args:
        layer: any Keras layer or model.

    Returns:
        bool; False for subclassed models (no layer graph in their config).
    """
    if not isinstance(layer, keras.Model):
        return False
    if is_sequential(layer):
        return True
    try:
        config = layer.get_config()
    except NotImplementedError:
        return False
    return isinstance(config, dict) and "layers" in config and "output_layers" in config


def copy_weights(target, source):
    """Copies ``source``'s weights into ``target`` layer by layer, by name, through nested models.

    Args:
        target: a model with the same layer names as ``source`` (e.g. rebuilt
            from its config).
        source: the model whose weights are copied.
    """
    for layer in target.layers:
        if not layer.weights:
            continue
        origin = source.get_layer(layer.name)
        if is_graph_model(layer):
            copy_weights(layer, origin)
        else:
            layer.set_weights(origin.get_weights())


def _fuse_entry(entry, source):
    """Config updates of a layer entry (the nested model fused, or the deploy form); the fused nested model."""
    if is_graph_model(source):
        nested = fuse(source)
        entry["config"] = nested.get_config()
        return nested
    if _reparameterisable(source):
        entry["config"].update(source.deploy_config() if hasattr(source, "deploy_config") else {"deploy": True})
    return None


def _set_fused_weights(fused, model, after, before, nested):
    for layer in fused.layers:
        if not layer.weights:
            continue
        if layer.name in nested:
            copy_weights(layer, nested[layer.name])
            continue
        source = model.get_layer(layer.name)
        weights = _fused_weights(source, after, before, model)
        if weights is None:
            weights = source.merged_weights() if _reparameterisable(source) else source.get_weights()
        layer.set_weights(weights)


def _entry_name(entry):
    return entry.get("name") or entry["config"]["name"]


def _fuse_sequential(model):
    """``fuse`` for a ``keras.Sequential``: each layer feeds only the next one."""
    if not model.built:
        raise TypeError(
            "`model` must be a built Sequential model (give it an input shape). "
            f"Received: model={model.name} (not built)"
        )
    config = model.get_config()
    entries = [e for e in config["layers"] if e["class_name"] != "InputLayer"]
    layers = [model.get_layer(_entry_name(e)) for e in entries]
    after, before = {}, {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.BatchNormalization) or not _normalises_last_axis(layer):
            continue
        if i > 0 and _is_plain_conv(layers[i - 1]) and layers[i - 1].name not in after.values():
            after[layer.name] = layers[i - 1].name
        elif i + 1 < len(layers) and _is_pointwise_conv(layers[i + 1]):
            before[layer.name] = (layers[i + 1].name, None)
    receivers = set(after.values()) | {conv for conv, _ in before.values()}
    kept, nested = [], {}
    for entry in config["layers"]:
        name = _entry_name(entry)
        if name in after or name in before:
            continue
        if entry["class_name"] != "InputLayer":
            if name in receivers:
                entry["config"]["use_bias"] = True
            fused_nested = _fuse_entry(entry, model.get_layer(name))
            if fused_nested is not None:
                nested[name] = fused_nested
        kept.append(entry)
    config["layers"] = kept
    fused = keras.Sequential.from_config(config, custom_objects=package_layers.custom_objects())
    if not fused.built:
        fused.build(model.inputs[0].shape if getattr(model, "inputs", None) else config.get("build_input_shape"))
    _set_fused_weights(fused, model, after, before, nested)
    return fused


def fuse(model):
    """Returns a new inference model with every foldable BatchNormalization merged.

    A BN is folded into the convolution that feeds it (``Conv1D/2D/3D``,
    ``DepthwiseConv2D`` or ``layers.GroupConv2D``) when that convolution has
    no activation and no other consumer: ``W' = W * gamma / sqrt(var + eps)``,
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``. A BN whose only
    consumer is a pointwise (1x1, ungrouped) convolution is folded into that
    convolution's input side (``W' = diag(s) W``, ``b' = b + t W``), exact
    because a 1x1 convolution pads nothing. Other BNs (e.g. one feeding a
    residual add or a pooling) stay. Every other layer keeps its name and
    weights. The result is for inference (BN statistics are frozen into the
    weights). Re-parameterisable layers (``layers.ReparamLargeKernelConv``)
    are switched to their merged ``deploy=True`` form, and continuous-kernel
    layers (``layers.CKConv``, ``FlexConv``, ``SeparableFlexConv``) to their
    baked form (with ``resolution="continuous"`` the kernel is baked for the
    layer's static input size).

    Nested functional and Sequential models (a zoo backbone inside a user's
    transfer model, at any depth) are fused the same way and keep their
    names; a nested subclassed model is kept as it is.

    Args:
        model: a functional or Sequential Keras model (Keras 3 or tf_keras).

    Returns:
        A new ``keras.Model`` with the same inputs and outputs.

    Raises:
        TypeError: when ``model`` is not a functional or Sequential model.
        ValueError: when a ``resolution="continuous"`` layer has no static
            input size (build the model with a static ``input_shape``, or
            see ``keras_convzoo.export.prepare_for_export``).

    Example:
    >>> model = keras_convzoo.ResNeXt50()
    >>> fused = keras_convzoo.deploy.fuse(model)
    >>> len(fused.layers) < len(model.layers)
    True
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise TypeError(
            f"`model` must be a functional or Sequential keras.Model. Received: model={type(model).__name__}"
        )
    if is_sequential(model):
        return _fuse_sequential(model)
    try:
        config = model.get_config()
    except NotImplementedError as error:
        raise TypeError(
            f"`model` must be a functional keras.Model (subclassed models have no graph config). "
            f"Received: model={type(model).__name__}"
        ) from error
    if "layers" not in config or "output_layers" not in config:
        raise TypeError(
            f"`model` must be a functional keras.Model (its config has no layer graph). "
            f"Received: model={type(model).__name__}"
        )
    after, before = _foldable_bns(model, config["layers"], config["output_layers"])
    mapping = dict(after)
    mapping.update({bn: ref for bn, (_, ref) in before.items()})
    receivers = set(after.values()) | {conv for conv, _ in before.values()}
    layers, nested = [], {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in mapping:
            continue
        # Only this graph's edges are renamed: a nested model's config holds its own graph.
        entry["inbound_nodes"] = _rename(entry.get("inbound_nodes", []), mapping)
        if name in receivers:
            entry["config"]["use_bias"] = True
        fused_nested = _fuse_entry(entry, model.get_layer(name))
        if fused_nested is not None:
            nested[name] = fused_nested
        layers.append(entry)
    config["layers"] = layers
    config["output_layers"] = _rename(config["output_layers"], mapping)
    fused = keras.Model.from_config(config, custom_objects=package_layers.custom_objects())
    _set_fused_weights(fused, model, after, before, nested)
    for attribute in ("convzoo_name", "pretrained_cfg"):  # what preprocess_input and the exporters read
        if hasattr(model, attribute):
            setattr(fused, attribute, getattr(model, attribute))
    if hasattr(model, "convzoo_stages"):  # stage outputs (feature extraction): a folded BN's output is its conv's
        renamed = {stage: mapping.get(layer, layer) for stage, layer in model.convzoo_stages.items()}
        fused.convzoo_stages = {stage: layer if isinstance(layer, str) else layer[0] for stage, layer in renamed.items()}
    return fused
