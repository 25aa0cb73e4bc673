"""How a family reads the weights of an upstream source: ``KeyMap`` and ``WeightFormat``.

A family declares, in its own module, one ``WeightFormat`` per source it can
load (``"timm"``, ``"keras"``, ``"torchvision"``, ``"official"``) and hands
them to the builder through ``ModelSpec.weight_formats``. The generic
machinery in ``keras_convzoo.weights`` (reading files, checking that every
tensor is used once, all-or-nothing assignment) reads these declarations and
never guesses a family from layer names.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple

#: Sources of upstream weights, in the order ``list_pretrained`` reports them.
SOURCES = ("keras", "timm", "torchvision", "official")


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """Names and layout of a family's layers in a PyTorch state dict (timm, torchvision).

    Attributes:
        module_name: ``module_name(layer_name, layer_names) -> str | None``:
            the checkpoint module prefix of one of our layers (e.g.
            ``"stage1_block1_conv1"`` -> ``"layer1.0.conv1"``); None for a
            layer without counterpart. ``layer_names`` is the set of the
            model's layer names (some mappings depend on a block's shape).
        head_prefixes: checkpoint prefixes that a model without top leaves
            unused (the classifier, e.g. ``("fc.",)``).
        head_norm_prefixes: prefixes a model without top uses only when it
            has a ``head_norm`` layer (ConvNeXt's ``head.norm.``).
        bn_epsilon: BatchNorm epsilon the source computes with (PyTorch's
            default 1e-5); a model built with another is refused.
        ln_epsilon: LayerNorm epsilon of the source, or None when the
            family has none.
    """

    module_name: Callable[[str, frozenset], Optional[str]]
    head_prefixes: Tuple[str, ...]
    head_norm_prefixes: Tuple[str, ...] = ()
    bn_epsilon: float = 1e-5
    ln_epsilon: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class WeightFormat:
    """How one upstream source's weights load into a family.

    Exactly one of ``key_map`` (PyTorch state dicts mapped by name),
    ``port`` (a state-dict porter written by hand, e.g. CCNN's) or
    ``keras_reference`` (keras.applications ``.h5`` files) is set.

    Attributes:
        config: config overrides under which the architecture computes
            exactly what the source's model does (e.g. MobileNetV2's
            ``padding_mode="torch", bn_epsilon=1e-5`` for timm). The builder
            applies them when it loads that source's weights.
        key_map: a ``KeyMap`` for PyTorch state dicts.
        port: ``port(model, state_dict)`` for state dicts not mapped by a
            ``KeyMap``.
        keras_reference: ``keras_reference(spec, classes) -> keras.Model``:
            the keras.applications model whose ``.h5`` weights file this
            source serves (built with ``weights=None``).
        keras_convert: ``keras_convert(variable_path, array) -> array``:
            turns one keras.applications variable into our layout (e.g.
            ConvNeXt's depthwise kernels); None keeps arrays as they are.
        preprocessing: input scaling of this source's ImageNet weights when
            the pretrained table has no mean/std for it: ``"tf"`` (-1..1),
            ``"none"`` (the model scales its 0-255 input itself).
    """

    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    key_map: Optional[KeyMap] = None
    port: Optional[Callable] = None
    keras_reference: Optional[Callable] = None
    keras_convert: Optional[Callable] = None
    preprocessing: Optional[str] = None

    def __post_init__(self):
        kinds = [self.key_map is not None, self.port is not None, self.keras_reference is not None]
        if sum(kinds) != 1:
            raise ValueError(
                "A WeightFormat needs exactly one of `key_map`, `port` or `keras_reference`. "
                f"Received: key_map={self.key_map!r}, port={self.port!r}, keras_reference={self.keras_reference!r}"
            )

    @property
    def reads_state_dicts(self):
        """True when the format loads PyTorch-style state dicts (``.safetensors``, ``.pth``, ``.npz``)."""
        return self.keras_reference is None

    def port_state_dict(self, model, state_dict, source, progress=None):
        """Loads a state dict of this format into ``model``: ``port`` or ``port_state_dict`` with ``key_map``.

        Args:
            model: a zoo model built with ``config``.
            state_dict: mapping of names to arrays.
            source: the source's name, for messages (``"timm"``).
            progress: optional ``progress(done, total)`` (key-mapped formats).

        Returns:
            The model.
        """
        if self.port is not None:
            return self.port(model, state_dict)
        from keras_convzoo.weights.timm import port_state_dict

        return port_state_dict(model, state_dict, self.key_map, source, progress)
