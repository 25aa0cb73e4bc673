"""Porting timm state dicts onto zoo models by their deterministic layer names.

Supported: the residual families (``resnext50_32x4d``, ``resnext101_32x8d``,
``seresnet18/34/50/101/152``, ``seresnext50_32x4d``, ``seresnext101_32x4d``;
torchvision's ResNeXt checkpoints use the same names), MobileNetV2
(timm's ``mobilenetv2_035/050/075/100/140``) and ConvNeXt
(``convnext_tiny/small/base/large/xlarge``).

Name mapping (ours -> timm):

- residual: ``stem_conv``/``stem_bn`` -> ``conv1``/``bn1``;
  ``stage{S}_block{B}_conv{i}``/``_bn{i}`` -> ``layer{S}.{B-1}.conv{i}``/``bn{i}``;
  ``..._downsample_conv``/``_bn`` -> ``layer{S}.{B-1}.downsample.0``/``.1``;
  ``..._se_fc1``/``_fc2`` -> ``layer{S}.{B-1}.se.fc1``/``.fc2``; ``predictions`` -> ``fc``.
- MobileNetV2: ``stem_conv``/``stem_bn`` -> ``conv_stem``/``bn1``; blocks
  ``stage{S}_block{B}`` -> ``blocks.{S-1}.{B-1}``: ``expand_conv``/``_bn`` ->
  ``conv_pw``/``bn1``, ``dw_conv``/``_bn`` -> ``conv_dw``/``bn2``,
  ``project_conv``/``_bn`` -> ``conv_pwl``/``bn3``; in the first block (no
  expansion, timm's depthwise-separable block) ``dw_conv``/``_bn`` ->
  ``conv_dw``/``bn1`` and ``project_conv``/``_bn`` -> ``conv_pw``/``bn2``;
  ``head_conv``/``head_bn`` -> ``conv_head``/``bn2``; ``predictions`` -> ``classifier``.
- ConvNeXt: ``stem_conv``/``stem_norm`` -> ``stem.0``/``stem.1``;
  ``stage{S}_downsample_norm``/``_conv`` -> ``stages.{S-1}.downsample.0``/``.1``;
  ``stage{S}_block{B}_dw_conv``/``_norm``/``_pw_conv1``/``_pw_conv2``/``_layer_scale``
  -> ``stages.{S-1}.blocks.{B-1}.conv_dw``/``norm``/``mlp.fc1``/``mlp.fc2``/``gamma``;
  ``head_norm`` -> ``head.norm``; ``predictions`` -> ``head.fc``.

Array layouts: convolution kernels ``(out, in/groups, kh, kw)`` become
``(kh, kw, in/groups, out)`` (Conv2D and GroupConv2D), depthwise kernels
``(C, 1, kh, kw)`` become ``(kh, kw, C, 1)``, linear weights are transposed,
BatchNorm ``weight/bias/running_mean/running_var`` become
``gamma/beta/moving_mean/moving_variance``.

Nothing here imports torch: torch tensors are converted through their own
``.numpy()``; ``read_state_dict`` reads ``.safetensors``/``.npz`` without it.
timm's pretrained weights (``convert_timm_weights`` without a checkpoint) are
fetched by timm in a child process: timm next to TensorFlow crashes the process.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from keras_convzoo.backend import keras
from keras_convzoo.layers.group_conv2d import GroupConv2D
from keras_convzoo.layers.layer_scale import LayerScale
from keras_convzoo.progress import check_progress
from keras_convzoo.weights.loading import WeightsMismatchError
from keras_convzoo.weights.state_dict import to_numpy_state_dict

#: BatchNorm epsilon of timm's (PyTorch's default) BatchNorm2d.
TIMM_BN_EPSILON = 1e-5
#: LayerNorm epsilon of timm's ConvNeXt.
TIMM_LN_EPSILON = 1e-6

_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(\w+)$")
_DOWNSAMPLE = re.compile(r"^stage(\d+)_downsample_(norm|conv)$")
_PREFIXES = ("module.",)

#: Registry families of each layout port_timm knows.
_LAYOUT_FAMILIES = {
    "resnet": ("resnext", "seresnet", "seresnext"),
    "mobilenetv2": ("mobilenetv2",),
    "convnext": ("convnext",),
}
#: Checkpoint prefixes of the classifier (left unused by a model without top).
_CLASSIFIER = {"resnet": ("fc.",), "mobilenetv2": ("classifier.",), "convnext": ("head.fc.",)}


def _resnet_module(name, layer_names):
    fixed = {"stem_conv": "conv1", "stem_bn": "bn1", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, block, part = int(match[1]), int(match[2]), match[3]
    prefix = f"layer{stage}.{block - 1}"
    if re.fullmatch(r"(conv|bn)\d", part):
        return f"{prefix}.{part}"
    table = {
        "downsample_conv": "downsample.0",
        "downsample_bn": "downsample.1",
        "se_fc1": "se.fc1",
        "se_fc2": "se.fc2",
    }
    return f"{prefix}.{table[part]}" if part in table else None


def _mobilenetv2_module(name, layer_names):
    fixed = {
        "stem_conv": "conv_stem",
        "stem_bn": "bn1",
        "head_conv": "conv_head",
        "head_bn": "bn2",
        "predictions": "classifier",
    }
    if name in fixed:
        return fixed[name]
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, block, part = int(match[1]), int(match[2]), match[3]
    if f"stage{stage}_block{block}_expand_conv" in layer_names:  # timm InvertedResidual
        table = {
            "expand_conv": "conv_pw",
            "expand_bn": "bn1",
            "dw_conv": "conv_dw",
            "dw_bn": "bn2",
            "project_conv": "conv_pwl",
            "project_bn": "bn3",
        }
    else:  # timm DepthwiseSeparableConv
        table = {"dw_conv": "conv_dw", "dw_bn": "bn1", "project_conv": "conv_pw", "project_bn": "bn2"}
    return f"blocks.{stage - 1}.{block - 1}.{table[part]}" if part in table else None


def _convnext_module(name, layer_names):
    fixed = {"stem_conv": "stem.0", "stem_norm": "stem.1", "head_norm": "head.norm", "predictions": "head.fc"}
    if name in fixed:
        return fixed[name]
    match = _DOWNSAMPLE.match(name)
    if match:
        return f"stages.{int(match[1]) - 1}.downsample.{0 if match[2] == 'norm' else 1}"
    match = _BLOCK.match(name)
    if not match:
        return None
    stage, block, part = int(match[1]), int(match[2]), match[3]
    prefix = f"stages.{stage - 1}.blocks.{block - 1}"
    table = {"dw_conv": ".conv_dw", "norm": ".norm", "pw_conv1": ".mlp.fc1", "pw_conv2": ".mlp.fc2", "layer_scale": ""}
    return prefix + table[part] if part in table else None


_MODULE_NAMES = {"resnet": _resnet_module, "mobilenetv2": _mobilenetv2_module, "convnext": _convnext_module}


def _layout(model, layer_names):
    """Which timm layout a model has, from its layer names."""
    if "stem_norm" in layer_names and "stem_conv" in layer_names:
        return "convnext"
    if "head_conv" in layer_names or any(n.endswith("_project_conv") for n in layer_names):
        return "mobilenetv2"
    if "stem_bn" in layer_names and "stage1_block1_conv1" in layer_names:
        return "resnet"
    raise WeightsMismatchError(
        f"Model '{model.name}' is none of the families port_timm maps (ResNeXt, SE-ResNet, SE-ResNeXt, "
        "MobileNetV2, ConvNeXt built by keras_convzoo)."
    )


def _timm_spec(model, layout):
    """The registered spec of the model (by name), or one of its family, for messages."""
    from keras_convzoo.applications._registry import get_spec, list_models

    if model.name in list_models():
        spec = get_spec(model.name)
        if spec.family in _LAYOUT_FAMILIES[layout]:
            return spec
    for name in list_models():
        spec = get_spec(name)
        if spec.family in _LAYOUT_FAMILIES[layout] and spec.timm_name:
            return spec
    return None


def _config_hint(model, layout):
    spec = _timm_spec(model, layout)
    if spec is None:
        return ""
    if spec.timm_config:
        overrides = ", ".join(f"{k}={v!r}" for k, v in spec.timm_config.items())
        how = f"with {overrides} (its spec's timm_config), e.g. create_model({spec.name!r}, {overrides})"
    else:
        how = "with the default configuration of its family (no epsilon or padding override)"
    return (
        f" Build the model {how}, or pass the checkpoint as `weights=` to the constructor, "
        "which applies the timm configuration itself."
    )


def _check_layout(model, layout, layer_names):
    """Refuses models whose computation differs from timm's (padding, epsilons)."""
    problem = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not np.isclose(
            layer.epsilon, TIMM_BN_EPSILON, rtol=1e-3, atol=0
        ):
            problem = f"layer {layer.name!r} has BatchNorm epsilon {layer.epsilon:g}; timm uses {TIMM_BN_EPSILON:g}"
        elif isinstance(layer, keras.layers.LayerNormalization) and not np.isclose(
            layer.epsilon, TIMM_LN_EPSILON, rtol=1e-3, atol=0
        ):
            problem = f"layer {layer.name!r} has LayerNorm epsilon {layer.epsilon:g}; timm uses {TIMM_LN_EPSILON:g}"
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
                    f"the strided layer {layer.name!r} pads with {found}, while timm's PyTorch convolution pads "
                    f"{pad} on every side"
                )
        if problem:
            raise WeightsMismatchError(
                f"Model '{model.name}' does not compute what timm's does: {problem}. No weight was changed."
                + _config_hint(model, layout),
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


def port_timm(model, state_dict, progress=None):
    """Loads a timm state dict into a zoo model of the same variant (all or nothing).

    Maps timm's module names onto our deterministic layer names (see the
    module docstring for the table), converts channels-first kernels to
    Keras' layouts and BatchNorm buffers to Keras' moving statistics.
    Before anything is written it checks:

    - that the model computes what timm's does: BatchNorm epsilon 1e-5,
      LayerNorm epsilon 1e-6, and symmetric padding of every strided
      convolution (MobileNetV2 is built for keras.applications' "same"
      padding by default: build it with its spec's ``timm_config``, i.e.
      ``padding_mode="torch", bn_epsilon=1e-5``, or pass the checkpoint as
      ``weights=``, which does so);
    - that every weighted layer has a counterpart, every needed tensor is
      in the checkpoint and every shape matches;
    - that every checkpoint tensor is used (``num_batches_tracked`` aside;
      the classifier, and ConvNeXt's ``head.norm`` when the model has no
      ``head_norm``, may be left out of a model built with
      ``include_top=False``).

    A ``module.`` prefix on every key (DataParallel) is removed. An input
    ``Normalization`` layer (ConvNeXt's ``include_preprocessing=True``)
    keeps its constants. On any mismatch the model is left unchanged.

    Args:
        model: a ResNeXt, SE-ResNet, SE-ResNeXt, MobileNetV2 or ConvNeXt
            built by keras_convzoo with the checkpoint's variant.
        state_dict: mapping of timm parameter names to numpy arrays or
            torch tensors (e.g. ``timm_model.state_dict()`` or
            ``read_state_dict("model.safetensors")``).
        progress: optional ``progress(done, total)`` called per layer, e.g. a
            ``keras_convzoo.progress.ProgressBar``.

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the tensor and the
            layer of the first problem.
        TypeError: if ``state_dict`` is not a mapping.

    Example:
    >>> model = keras_convzoo.SEResNet50()
    >>> port_timm(model, read_state_dict("seresnet50.safetensors"))
    """
    state = _strip_prefix(to_numpy_state_dict(state_dict))
    layer_names = {layer.name for layer in model.layers}
    layout = _layout(model, layer_names)
    _check_layout(model, layout, layer_names)
    module_name = _MODULE_NAMES[layout]
    progress = check_progress(progress)
    updates, used = [], set()
    for index, layer in enumerate(model.layers):
        if progress is not None:
            progress(index + 1, len(model.layers))
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Normalization):  # input scaling constants, not learned
            continue
        module = module_name(layer.name, layer_names)
        keys, extra = (None, set()) if module is None else _layer_keys(layer, module)
        if keys is None:
            raise WeightsMismatchError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no counterpart in timm's {layout} layout "
                "(a config option timm does not have?). No weight was changed.",
                layer=layer.name,
            )
        if len(keys) != len(layer.weights):
            raise WeightsMismatchError(
                f"Layer {layer.name!r} has {len(layer.weights)} weights but timm's {module} has {len(keys)}. "
                "No weight was changed.",
                layer=layer.name,
            )
        arrays = []
        for variable, (key, kind) in zip(layer.weights, keys):
            if key not in state:
                raise WeightsMismatchError(
                    f"The checkpoint has no {key!r} (needed by layer {layer.name!r}): it is not a timm "
                    f"checkpoint of this {layout} variant. No weight was changed.",
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
        skippable = _CLASSIFIER[layout] + (("head.norm.",) if "head_norm" not in layer_names else ())
    unused = sorted(
        k for k in set(state) - used if not k.endswith("num_batches_tracked") and not k.startswith(skippable)
    )
    if unused:
        raise WeightsMismatchError(
            f"{len(unused)} checkpoint tensor(s) have no place in model '{model.name}', e.g. {unused[:5]}: "
            "the checkpoint is of another variant (depths, widths) or family. No weight was changed."
        )
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return model


def _pretrained_state_dict(timm_name, pretrained=True):
    """``timm.create_model(timm_name, pretrained=True).state_dict()`` as numpy arrays.

    timm runs in a child process (``_timm_fetch.py``, this Python): importing
    it next to TensorFlow crashes the process (see that file). ``pretrained=False``
    returns a randomly initialised model's state dict (tests, no network).
    """
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_timm_fetch.py")
    with tempfile.TemporaryDirectory(prefix="convzoo_timm_") as out_dir:
        command = [sys.executable, script, timm_name, out_dir] + ([] if pretrained else ["--random-init"])
        result = subprocess.run(command, capture_output=True, text=True)
        status_path = os.path.join(out_dir, "status.json")
        if not os.path.exists(status_path):
            raise RuntimeError(
                f"The process fetching timm's {timm_name!r} ended with exit status {result.returncode} "
                f"without a result: {(result.stderr or result.stdout)[-2000:]}"
            )
        with open(status_path) as handle:
            status = json.load(handle)
        if status.get("error") == "import":
            raise ImportError(
                "Porting without a checkpoint file downloads timm's pretrained weights and needs timm "
                "(pip install torch torchvision timm); or pass a checkpoint file (.safetensors needs no torch). "
                f"({status['message']})"
            )
        if status.get("error") == "unknown":
            raise ValueError(
                f"timm has no pretrained weights for {timm_name!r}; pass a checkpoint file of your own "
                "(--checkpoint FILE)."
            )
        if status.get("error"):
            raise RuntimeError(
                f"timm could not fetch the pretrained {timm_name!r} ({status['message']}). Without a "
                "network, download the checkpoint elsewhere and pass it with --checkpoint FILE."
            )
        with np.load(os.path.join(out_dir, "state.npz"), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def convert_timm_weights(name, out=None, checkpoint=None, progress=None):
    """Writes a registered model's weights ported from timm to a ``.weights.h5`` file.

    The model is built with ``include_top=True``, 1000 classes and the
    spec's ``timm_config``; the file is what ``weights="imagenet"`` loads
    when it sits at ``imagenet_weights_path(name)`` (the default ``out``).

    Args:
        name: registry name with a ``timm_name`` (e.g. ``"seresnet50"``).
        out: output path ending with ``.weights.h5``; default
            ``$KERAS_CONVZOO_HOME/<name>.weights.h5``.
        checkpoint: a timm state dict file (``.safetensors``, ``.npz``,
            ``.pth``, ``.bin``). None: create the timm model with
            ``pretrained=True`` (needs timm and a network).
        progress: optional ``progress(done, total)`` (see ``port_timm``).

    Returns:
        The path written.

    Raises:
        ValueError: unknown or unsupported name, bad ``out`` suffix, or a
            checkpoint that does not fit (``WeightsMismatchError``).
        ImportError: no checkpoint given and timm missing.

    Example:
    >>> convert_timm_weights("seresnet50", checkpoint="model.safetensors")
    '/home/me/.keras/convzoo/seresnet50.weights.h5'
    """
    from keras_convzoo.applications._registry import create_model, get_spec
    from keras_convzoo.weights.loading import imagenet_weights_path
    from keras_convzoo.weights.state_dict import read_state_dict

    spec = get_spec(name)
    if spec.timm_name is None:
        raise ValueError(f"'{name}' has no timm counterpart to port weights from.")
    out = imagenet_weights_path(name) if out is None else os.fspath(out)
    if not out.endswith(".weights.h5"):
        raise ValueError(f"The output file must end with '.weights.h5'. Received: out={out!r}")
    state = _pretrained_state_dict(spec.timm_name) if checkpoint is None else read_state_dict(checkpoint)
    model = create_model(name, classifier_activation=None, **spec.timm_config)
    port_timm(model, state, progress=progress)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    model.save_weights(out)
    return out
