"""Models whose training form does not convert, brought to their exportable (fused, float32) form.

Mixed precision: a model built under ``mixed_bfloat16`` / ``mixed_float16``
(or a 16-bit policy) computes in 16 bits, which the TFLite converter (a
bfloat16 ``Mul`` is neither builtin nor flex) and tf2onnx (no bfloat16
mapping) refuse. ``float32_form`` rebuilds such a model from its config with
every layer's policy set to float32 and copies its weights: the exported
files compute in float32 (quantize them with ``quantization=...``) and are
verified against that float32 form.

Continuous-kernel layers (``layers.CKConv``, ``FlexConv``,
``SeparableFlexConv``, every CCNN convolution) generate their kernel with a
small network at call time and may convolve through the FFT, which tf2onnx
does not convert (``RFFT2D``/``IRFFT2D``, ``LowerBound``) and TFLite not in
every case (``tf.Conj`` in 1D). Their ``deploy=True`` form (a baked kernel,
direct convolution) converts; ``prepare_for_export`` switches a
model, nested backbones included, to it with ``keras_convzoo.deploy.fuse``
and says so in a note for the export report.
"""

import copy

from keras_convzoo.backend import keras, tf
from keras_convzoo import layers as package_layers
from keras_convzoo.deploy.fuse import copy_weights, fuse, is_graph_model, is_sequential
from keras_convzoo.input_shapes import check_model
from keras_convzoo.layers.continuous_conv import ContinuousConvBase

#: InputLayer config keys of the batch shape: Keras 3, tf_keras.
_BATCH_SHAPE_KEYS = ("batch_shape", "batch_input_shape")


class _RebuildError(Exception):
    """The model cannot be rebuilt at a static input shape (the reason is the message)."""


def _training_form(layer):
    return isinstance(layer, ContinuousConvBase) and not layer.deploy


def _inner_layers(layer):
    """Every sublayer of ``layer`` at any depth (``fuse`` cannot reach them in a custom layer or subclassed model)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    return list(getattr(layer, "submodules", ()))


def keras_quantized_layers(model):
    """Layers of ``model`` (nested ones included) quantized by Keras' ``model.quantize`` (``"int8"``, ``"float8"``...).

    Args:
        model: a Keras model.

    Returns:
        A list of ``(layer name, quantization mode)``; empty for a float model.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.quantize("int8")
    >>> keras_quantized_layers(model)
    [('dense', 'int8')]
    """
    found = []
    for layer in _inner_layers(model):
        mode = getattr(getattr(layer, "dtype_policy", None), "quantization_mode", None)
        if mode:
            found.append((layer.name, mode))
    return found


def _continuous_layers(model):
    """``(reachable, hidden)`` training-form continuous layers of ``model``.

    ``reachable``: layers of the (nested) functional / Sequential graphs, which
    ``deploy.fuse`` bakes. ``hidden``: ``(container name, layer)`` for layers
    inside a subclassed model or custom layer, which it cannot reach.
    """
    reachable, hidden = [], []
    if not is_graph_model(model):
        return reachable, [(model.name, layer) for layer in _inner_layers(model) if _training_form(layer)]
    for layer in model.layers:
        if _training_form(layer):
            reachable.append(layer)
        elif is_graph_model(layer):
            inner_reachable, inner_hidden = _continuous_layers(layer)
            reachable += inner_reachable
            hidden += inner_hidden
        else:
            hidden += [(layer.name, inner) for inner in _inner_layers(layer) if _training_form(inner)]
    return reachable, hidden


def _model_input_shapes(model):
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    return [tuple(None if d is None else int(d) for d in tensor.shape) for tensor in inputs]


def _check_sample_shapes(sample_shape, model_shapes):
    """``sample_shape`` as a list of shapes without batch, one per model input, checked against the model."""
    received = f"Received: sample_shape={sample_shape!r}"

    def is_shape(value):
        return isinstance(value, (tuple, list)) and len(value) > 0 and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value
        )

    if is_shape(sample_shape):
        shapes = [tuple(sample_shape)]
    elif isinstance(sample_shape, (tuple, list)) and sample_shape and all(is_shape(s) for s in sample_shape):
        shapes = [tuple(s) for s in sample_shape]
    else:
        raise ValueError(
            "`sample_shape` must be the input shape without batch, positive ints (e.g. (32, 32, 3)), or a list of "
            f"them for a model with several inputs. {received}"
        )
    if model_shapes is None:
        return shapes
    expected = [shape[1:] for shape in model_shapes]
    compatible = len(shapes) == len(expected) and all(
        len(s) == len(e) and all(m is None or m == d for d, m in zip(s, e)) for s, e in zip(shapes, expected)
    )
    if not compatible:
        allowed = expected[0] if len(expected) == 1 else expected
        raise ValueError(
            f"`sample_shape` must fit the model input {allowed} (same rank, channels and static sizes; "
            f"None sizes free). {received}"
        )
    return shapes


def _set_input_shapes(config, shapes):
    """Makes the batch shapes of a functional or Sequential config's InputLayers ``(batch, *shape)``."""
    if "input_layers" in config:
        names = [ref[0] for ref in _input_refs(config["input_layers"])]
    else:  # Sequential: its InputLayer (if any) and its build_input_shape
        names = [e["config"]["name"] for e in config["layers"] if e["class_name"] == "InputLayer"][:1]
        if not names and config.get("build_input_shape") is None:
            raise _RebuildError(f"Sequential `{config.get('name')}` has no input shape in its config")
        if not names:
            names = [None]
    if len(names) != len(shapes):
        raise _RebuildError(f"the model has {len(names)} inputs for {len(shapes)} input shapes")
    by_name = dict(zip(names, shapes))
    for entry in config["layers"]:
        if entry["class_name"] != "InputLayer" or entry["config"]["name"] not in by_name:
            continue
        key = next((k for k in _BATCH_SHAPE_KEYS if k in entry["config"]), None)
        if key is None:
            raise _RebuildError(f"input layer `{entry['config']['name']}` has no batch shape in its config")
        batch = (entry["config"][key] or [None])[0]
        entry["config"][key] = [batch] + list(by_name[entry["config"]["name"]])
    if "build_input_shape" in config and config["build_input_shape"] is not None:
        config["build_input_shape"] = [config["build_input_shape"][0]] + list(shapes[0])


def _input_refs(node):
    if isinstance(node, (list, tuple)) and len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):
        return [node]
    if isinstance(node, (list, tuple)):
        return [ref for item in node for ref in _input_refs(item)]
    return []


def _from_config(model, config):
    """A model like ``model`` from ``config`` (copied: deserialising consumes parts of it)."""
    cls = keras.Sequential if is_sequential(model) else keras.Model
    return cls.from_config(copy.deepcopy(config), custom_objects=package_layers.custom_objects())


def _called_shapes(layer):
    """The input shapes (without batch) ``layer`` is called on in its freshly built parent graph."""
    shapes = set()
    for node in getattr(layer, "_inbound_nodes", ()):
        tensors = tf.nest.flatten(node.input_tensors)
        shapes.add(tuple(tuple(t.shape)[1:] for t in tensors))
    if len(shapes) != 1:
        detail = "different input shapes" if shapes else "no recorded call"
        raise _RebuildError(f"nested model `{layer.name}` has {detail}")
    (shape,) = shapes
    if any(d is None for s in shape for d in s):
        raise _RebuildError(f"nested model `{layer.name}` gets an input whose size is not static: {shape}")
    return list(shape)


def _static_config(model, shapes):
    """``model``'s config with static input shapes, nested models' included."""
    config = model.get_config()
    _set_input_shapes(config, shapes)
    for entry in config["layers"]:
        entry.pop("build_config", None)  # Keras 3 would build each layer at its old (dynamic) input shape
    nested = [e for e in config["layers"] if e["class_name"] != "InputLayer" and _is_nested(model, e)]
    if nested:
        probe = _from_config(model, config)  # nested models still dynamic: shows the shapes they are called on
        for entry in nested:
            name = entry["config"]["name"]
            entry["config"] = _static_config(model.get_layer(name), _called_shapes(probe.get_layer(name)))
    return config


def _is_nested(model, entry):
    try:
        return is_graph_model(model.get_layer(entry["config"]["name"]))
    except ValueError:
        return False


def _rebuild_static(model, shapes):
    """``model`` rebuilt from its config with static input shapes, weights copied."""
    try:
        rebuilt = _from_config(model, _static_config(model, shapes))
        copy_weights(rebuilt, model)
    except _RebuildError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, NotImplementedError) as error:
        raise _RebuildError(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    return rebuilt


#: Compute dtypes ``float32_form`` exports in float32.
_HALF_DTYPES = ("bfloat16", "float16")


def _half_precision_layers(model):
    """Layers of ``model`` (itself and every sublayer) that compute in bfloat16 or float16."""
    return [layer for layer in [model, *_inner_layers(model)]
            if str(getattr(layer, "compute_dtype", "float32")) in _HALF_DTYPES]


def _float32_policies(value):
    """``value`` (a model config, nested) with every layer's 16-bit or mixed dtype policy replaced by float32."""
    if isinstance(value, list):
        return [_float32_policies(v) for v in value]
    if not isinstance(value, dict):
        return value
    updated = {}
    for key, entry in value.items():
        if key == "dtype" and _policy_name(entry) in ("mixed_bfloat16", "mixed_float16", *_HALF_DTYPES):
            updated[key] = "float32"
        else:
            updated[key] = _float32_policies(entry)
    return updated


def _policy_name(entry):
    """The policy name of a layer config's ``dtype`` entry (a name, or a serialized ``DTypePolicy``)."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and "Policy" in str(entry.get("class_name", "")):
        return (entry.get("config") or {}).get("name")
    return None


def float32_form(model):
    """The float32 form of a mixed-precision model, which TFLite and ONNX convert; other models unchanged.

    A model trained under ``keras.mixed_precision`` policies
    (``mixed_bfloat16``, ``mixed_float16``) or built with a 16-bit policy
    computes in 16 bits: the TFLite converter rejects its bfloat16 ops and
    tf2onnx has no bfloat16 type. This rebuilds the model (nested models
    included) from its config with every layer's policy set to float32 and
    copies its weights (float32 already under a mixed policy; cast from 16
    bits otherwise). The result computes what the model computes, in float32.
    A subclassed model is rebuilt by its own class (``from_config``), as
    keras-hub's task models are.

    Args:
        model: a ``keras.Model``.

    Returns:
        ``(model, notes)``: the float32 model (``model`` itself when it
        already computes in float32) and a tuple of strings for
        ``ExportReport.notes``.

    Raises:
        ValueError: for a subclassed 16-bit model whose class cannot rebuild
            it from its config.

    Example:
    >>> keras.mixed_precision.set_global_policy("mixed_bfloat16")
    >>> model = kcz.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=3)
    >>> keras.mixed_precision.set_global_policy("float32")
    >>> exported, notes = float32_form(model)
    >>> exported.layers[-1].compute_dtype
    'float32'
    """
    half = _half_precision_layers(check_model(model))
    if not half:
        return model, ()
    policies = sorted({layer.dtype_policy.name for layer in half})
    if not is_graph_model(model):
        rebuilt = _subclassed_float32_form(model)
        if rebuilt is not None:
            return rebuilt, (f"computes in float32: the model ({type(model).__name__}, {', '.join(policies)}) rebuilt "
                             "from its config with float32 policies and its weights copied; verified against that "
                             "float32 form",)
        raise ValueError(
            f"`model` computes in {half[0].compute_dtype} (layer `{half[0].name}`), which TFLite and ONNX do not "
            "convert, and as a subclassed model it cannot be rebuilt in float32 here: build the same model in "
            "float32 (dtype='float32' where it was built with dtype=, e.g. keras-hub models, else under "
            "keras.mixed_precision.set_global_policy('float32')), copy the weights with "
            f"set_weights(model.get_weights()) and export that. Received: model={type(model).__name__}"
        )
    try:
        rebuilt = _from_config(model, _float32_policies(model.get_config()))
        copy_weights(rebuilt, model)
    except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError) as error:
        raise ValueError(
            f"Cannot rebuild `model` with float32 policies for export (its layers compute with "
            f"{', '.join(policies)}; {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}): "
            "build it under keras.mixed_precision.set_global_policy('float32'), copy the weights with "
            "set_weights(model.get_weights()) and export that."
        ) from error
    left = _half_precision_layers(rebuilt)
    if left:
        raise ValueError(
            f"`model`'s layer `{left[0].name}` still computes in {left[0].compute_dtype} after its config's policies "
            "were set to float32 (a custom layer that fixes its own dtype?): build the model under "
            "keras.mixed_precision.set_global_policy('float32'), copy the weights and export that."
        )
    note = (f"computes in float32: the model's {', '.join(policies)} layers ({len(half)}) rebuilt with the float32 "
            "policy and its weights copied (TFLite and ONNX convert no bfloat16 compute); verified against that "
            "float32 form")
    return rebuilt, (note,)


def _subclassed_float32_form(model):
    """A subclassed model rebuilt by its own class from its config with float32 policies, weights copied; or None.

    The same class and config (policies aside) create the same variables in
    the same order, so ``set_weights`` copies them (float32 already under a
    mixed policy, cast from 16 bits otherwise). keras-hub's models (a task
    such as ``ImageClassifier`` around a backbone built with ``dtype=``)
    rebuild this way; a class without a working ``from_config`` gives None.
    """
    try:
        config = _float32_policies(model.get_config())
        rebuilt = type(model).from_config(copy.deepcopy(config))
        source = model.get_weights()
        if [tuple(w.shape) for w in rebuilt.weights] != [tuple(w.shape) for w in source]:
            return None
        rebuilt.set_weights(source)
    except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError):
        return None
    return None if _half_precision_layers(rebuilt) else rebuilt


def _format_shape(shapes):
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def prepare_for_export(model, sample_shape=None, argument="sample_shape"):
    """Returns the form of ``model`` that converts to TFLite / ONNX, and notes saying what was done.

    Continuous-kernel layers (``layers.CKConv``, ``FlexConv``,
    ``SeparableFlexConv``, CCNN) in their training form (``deploy=False``)
    do not convert: their kernel network and FFT convolution have no TFLite
    or ONNX counterpart. When ``model`` (nested functional / Sequential
    models included, e.g. a CCNN backbone inside a transfer model) has such
    layers, this returns ``keras_convzoo.deploy.fuse(model)``: the generated
    kernels baked into weights, BatchNormalizations folded, the same outputs
    (float tolerance). A ``resolution="continuous"`` layer's kernel depends
    on the input size: when the model's input sizes are ``None``, the model
    is first rebuilt from its config at the static ``sample_shape`` (nested
    models too, weights copied), so the kernel is baked for the size the
    exported file will have. Other models, re-parameterisable RepLKNet
    layers included (they convert unfused), are returned unchanged.

    Args:
        model: a ``keras.Model``.
        sample_shape: the input shape without batch that the exported file
            will have, e.g. ``(32, 32, 3)`` (a list of them for a model with
            several inputs); needed only to bake ``resolution="continuous"``
            kernels of a model whose input sizes are ``None``. When given,
            it must fit the model's input (rank, channels, static sizes).
        argument: the name the caller's users give ``sample_shape`` (e.g.
            ``"input_shape"`` for ``to_onnx``), for the messages.

    Returns:
        ``(model, notes)``: the model to export (``model`` itself when
        nothing had to change) and a tuple of strings for
        ``ExportReport.notes`` (empty when nothing changed).

    Raises:
        TypeError: when ``model`` is not a ``keras.Model``.
        ValueError: when the continuous layers sit in a subclassed model or
            custom layer (``deploy.fuse`` needs a functional model), when
            ``sample_shape`` is malformed or does not fit the model, or when
            ``resolution="continuous"`` kernels cannot be baked for a static
            size (no ``sample_shape``, or a model that cannot be rebuilt).

    Example:
    >>> backbone = kcz.create_model("ccnn_4_140", include_top=False, pooling="avg", input_shape=(32, 32, 3))
    >>> inputs = keras.Input((32, 32, 3))
    >>> outputs = keras.layers.Dense(10)(backbone(keras.layers.Rescaling(1 / 255)(inputs)))
    >>> prepared, notes = prepare_for_export(keras.Model(inputs, outputs), (32, 32, 3))
    >>> report = kcz.export.to_tflite(prepared, "ccnn.tflite", input_shape=(32, 32, 3))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    model_shapes = _model_input_shapes(model)
    shapes = None if sample_shape is None else _check_sample_shapes(sample_shape, model_shapes)
    reachable, hidden = _continuous_layers(model)
    if hidden:
        container, layer = hidden[0]
        raise ValueError(
            f"`model` has continuous-kernel layers in their training form inside `{container}` (e.g. `{layer.name}`), "
            "a subclassed model or custom layer; keras_convzoo.deploy.fuse needs a functional model: build it with "
            "the functional API (keras.Model(inputs, outputs)) and call keras_convzoo.deploy.fuse(model). "
            f"Received: model={type(model).__name__}"
        )
    if not reachable:
        return model, ()
    dynamic = [l for l in reachable if l.resolution == "continuous" and any(s is None for s in l.input_spatial)]
    if dynamic and shapes is None and model_shapes and all(d is not None for s in model_shapes for d in s[1:]):
        shapes = [s[1:] for s in model_shapes]  # a static model around a dynamic nested backbone
    if dynamic:
        if shapes is None:
            raise ValueError(
                f"`{argument}` is required: the resolution='continuous' kernels of `{dynamic[0].name}` depend on "
                f"the input size and the model input {_format_shape([s[1:] for s in model_shapes or [()]])} has None "
                f"sizes; pass {argument}=(the exported size), or build the model with input_shape=... and call "
                f"keras_convzoo.deploy.fuse(model). Received: {argument}=None"
            )
        try:
            model = _rebuild_static(model, shapes)
        except _RebuildError as error:
            raise ValueError(
                f"Cannot rebuild `model` at {argument}={_format_shape(shapes)} to bake its resolution='continuous' "
                f"kernels ({error}): build the model with input_shape={_format_shape(shapes)} and call "
                "keras_convzoo.deploy.fuse(model)."
            ) from error
        size = _format_shape(shapes)
    else:
        size = None
    fused = fuse(model)
    kernels = f"continuous kernels of {len(reachable)} layer{'s' if len(reachable) != 1 else ''}"
    if size is None and any(l.resolution == "continuous" for l in reachable):
        size = _format_shape([s[1:] for s in _model_input_shapes(model)])
    if size is not None:
        note = f"{kernels} baked for input {size} with keras_convzoo.deploy.fuse (the file runs at this size)"
    else:
        note = (
            f"{kernels} baked with keras_convzoo.deploy.fuse (their kernel networks and FFT convolutions do not "
            "convert)"
        )
    return fused, (note,)
