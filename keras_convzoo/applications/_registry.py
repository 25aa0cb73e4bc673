"""The model registry: one ``ModelSpec`` per variant, one source of truth."""

import dataclasses
import difflib
import fnmatch
import typing
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import numpy as np

from keras_convzoo.weights.formats import SOURCES, WeightFormat

_REGISTRY = {}

#: Input scalings of ``keras.applications.imagenet_utils.preprocess_input``.
PREPROCESSING_MODES = ("torch", "tf", "caffe")


def to_python(value):
    """Turns numpy scalars (and arrays) into the Python values they hold, recursively.

    ``np.float32(1.0)`` -> ``1.0``, ``np.int64(3)`` -> ``3``, ``np.bool_(True)``
    -> ``True`` (still a bool), a 0-d array -> its item, a 1-d or deeper array
    -> nested tuples; tuples and lists keep their type with their entries
    converted; anything else is returned unchanged.

    Args:
        value: any argument value.

    Returns:
        The value with every numpy scalar replaced by a Python one.

    Example:
    >>> to_python((np.int64(3), np.float32(0.5)))
    (3, 0.5)
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else to_python(_tuples(value.tolist()))
    if type(value) in (tuple, list):
        return type(value)(to_python(v) for v in value)
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_NO_SUGGESTION = object()


def match_choice(name, value, choices, where="", aliases=None):
    """Returns the entry of ``choices`` that ``value`` names, matching strings case-insensitively.

    Args:
        name: argument name, for the message.
        value: the value received.
        choices: the allowed values (strings, and None where allowed).
        where: optional constructor name for the message (``"ResNeXt50"``).
        aliases: optional ``{lowercase wrong spelling: choice}`` suggested
            (not accepted) in the message, e.g. ``{"mean": "avg"}``.

    Returns:
        The matching choice (``"AVG"`` -> ``"avg"``).

    Raises:
        ValueError: one line naming the argument, the allowed values, the
            closest spelling (``Did you mean 'avg'?``) and the value received.

    Example:
    >>> match_choice("pooling", "AVG", (None, "avg", "max"))
    'avg'
    """
    if any(value is c or (isinstance(value, str) and value == c) for c in choices):
        return value
    suggestion = _NO_SUGGESTION
    if isinstance(value, str):
        lowered = {c.lower(): c for c in choices if isinstance(c, str)}
        key = value.strip().lower()
        if key in lowered:
            return lowered[key]
        if aliases and key in aliases:
            suggestion = aliases[key]
        else:
            close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.6)
            if close:
                suggestion = lowered[close[0]]
    hint = "" if suggestion is _NO_SUGGESTION else f" Did you mean {suggestion!r}?"
    for_where = f" for {where}" if where else ""
    raise ValueError(f"`{name}` must be one of {tuple(choices)}{for_where}.{hint} Received: {name}={value!r}")


def config_field(default, *, choices=None, minimum=None):
    """A field of a family config dataclass with the values it may take.

    ``ModelSpec.with_config`` (every keyword override of a constructor goes
    through it) checks each override against the field's type annotation
    (numpy scalars count as the Python numbers they hold, bools are not ints,
    lists are turned into tuples), its ``choices`` (strings matched
    case-insensitively, a wrong spelling answered with the closest one) and
    its ``minimum`` (of an int, or of every entry of a tuple of ints, which
    must then be non-empty).

    Args:
        default: the default value.
        choices: optional tuple of allowed values.
        minimum: optional smallest allowed number.

    Returns:
        A ``dataclasses.field``.

    Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     depths: Tuple[int, ...] = config_field((3, 4, 6, 3), minimum=1)
    """
    metadata = {}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if minimum is not None:
        metadata["minimum"] = minimum
    return dataclasses.field(default=default, metadata=metadata)


def _plural(hint):
    names = {int: "ints", float: "numbers", bool: "bools", str: "strs", type(None): "None"}
    if hint in names:
        return names[hint]
    return _describe(hint, plural=True)


def _describe(hint, plural=False):
    """English for a type annotation: ``Tuple[int, ...]`` -> ``"a tuple of ints"``."""
    names = {int: "an int", float: "a number", bool: "a bool", str: "a str", type(None): "None"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    article = "" if plural else "a "
    noun = "tuples" if plural else "tuple"
    if origin is Union:
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts + (["None"] if type(None) in args else []))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{article}{noun} of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"{article}{noun} of {len(args)} {_plural(args[0])}"
        return f"{article}{noun} ({', '.join(_describe(a) for a in args)})"
    return getattr(hint, "__name__", str(hint))


def _conform(value, hint):
    """``(ok, value)``: whether ``value`` is of the annotated type, with lists turned into tuples."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if hint is str:
        return isinstance(value, str), value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        for arg in args:
            ok, conformed = _conform(value, arg)
            if ok:
                return True, conformed
        return False, value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False, value
        if not args:
            return True, tuple(value)
        entry_hints = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(entry_hints) != len(value):
            return False, value
        conformed = []
        for entry, entry_hint in zip(value, entry_hints):
            ok, entry = _conform(entry, entry_hint)
            if not ok:
                return False, value
            conformed.append(entry)
        return True, tuple(conformed)
    return True, value  # an annotation this check does not know: left to the family's own checks


def _below(value, minimum):
    """Whether an int, or any int of a (nested) tuple, is below ``minimum`` (a tuple must be non-empty)."""
    if isinstance(value, tuple):
        return not value or any(_below(v, minimum) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value < minimum


def check_config_overrides(config, overrides, where):
    """Checks and normalises overrides of a family config (see ``config_field``).

    Args:
        config: the family's config dataclass instance.
        overrides: ``{field: value}``; every field must exist.
        where: the constructor's name, for the messages (``"ResNeXt50"``).

    Returns:
        The overrides with numpy scalars turned into Python numbers, lists
        into tuples and choice strings into their canonical spelling.

    Raises:
        ValueError: a value outside the field's ``choices`` or below its
            ``minimum``, naming the field, what is allowed and what was received.
        TypeError: a value of another type than the annotation's.

    Example:
    >>> spec = get_spec("resnext50_32x4d")
    >>> check_config_overrides(spec.config, {"depths": [2, 2, 2, 2], "block": "Bottleneck"}, spec.entrypoint)
    {'depths': (2, 2, 2, 2), 'block': 'bottleneck'}
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name: f for f in dataclasses.fields(config)}
    checked = {}
    for field, value in overrides.items():
        value = to_python(value)
        metadata = fields[field].metadata
        if "choices" in metadata:
            value = match_choice(field, value, metadata["choices"], where)
        if field in hints:
            ok, value = _conform(value, hints[field])
            if not ok:
                raise TypeError(
                    f"`{field}` must be {_describe(hints[field])} for {where}. Received: {field}={value!r}"
                )
        minimum = metadata.get("minimum")
        if minimum is not None and _below(value, minimum):
            what = f"a non-empty tuple with every entry >= {minimum}" if isinstance(value, tuple) else f">= {minimum}"
            raise ValueError(f"`{field}` must be {what} for {where}. Received: {field}={value!r}")
        checked[field] = value
    return checked


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the shared builder, the tests and the tools know of a variant.

    Attributes:
        name: registry name (timm's name where timm has the model).
        family: family name, e.g. ``"resnext"``.
        entrypoint: public constructor name, e.g. ``"ResNeXt50"``.
        body: ``body(x, config) -> (x, features)``: adds the trunk to the
            graph; ``features`` maps stage names to their output tensors.
        config: the family's frozen dataclass of architecture settings.
            Its fields can be overridden by keyword arguments of the builder.
        default_size: default input side when ``include_top=True`` and no
            ``input_shape`` is given.
        min_size: smallest input side accepted.
        input_channels: channels of the images the variant is designed for.
        spatial_dims: number of spatial axes (2 for images); the default
            when no ``input_shape`` is given.
        accepted_spatial_dims: every spatial rank the family accepts
            (e.g. ``(1, 2, 3)`` for CCNN: sequences, images, volumes); empty
            means ``spatial_dims`` only.
        head: optional ``head(x, config) -> x`` applied after global pooling
            and before the classifier (e.g. ConvNeXt's LayerNorm).
        reference_params: trainable parameter count of the reference
            implementation (timm/torchvision/keras), asserted by the tests.
        reference: where ``reference_params`` comes from.
        reference_kwargs: builder arguments of the model ``reference_params``
            was counted on, when not the defaults (e.g. ``{"classes": 10}``).
        paper: citation of the architecture.
        test_overrides: config overrides that make the variant's tiny twin.
        timm_name: name of the timm model whose weights the variant can
            load, or None when timm has no such model; the pretrained table
            (``tools/make_pretrained_table.py``) reads timm's tags under it.
        weight_formats: source name (``"timm"``, ``"keras"``,
            ``"torchvision"``, ``"official"``) -> ``WeightFormat``: how the
            family reads that source's weights (key map, layout config). The
            family declares them in its own module; ``weights=`` accepts a
            state dict file when one of them reads state dicts.
        preprocessing: input scaling expected by the variant's ImageNet
            weights, a mode of ``keras.applications.imagenet_utils``:
            ``"torch"`` (0-255 to 0-1, then ImageNet mean/std), ``"tf"``
            (0-255 to -1..1) or ``"caffe"`` (BGR, mean subtracted); None when
            the variant has no ImageNet weights. Read by ``preprocess_input``.
    """

    name: str
    family: str
    entrypoint: str
    body: Callable
    config: Any
    default_size: int = 224
    min_size: int = 32
    input_channels: int = 3
    spatial_dims: int = 2
    accepted_spatial_dims: Tuple[int, ...] = ()
    head: Optional[Callable] = None
    reference_params: Optional[int] = None
    reference: str = ""
    reference_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper: str = ""
    test_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timm_name: Optional[str] = None
    weight_formats: Mapping[str, WeightFormat] = dataclasses.field(default_factory=dict)
    preprocessing: Optional[str] = None

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING_MODES + (None,):
            raise ValueError(
                f"`preprocessing` must be one of {PREPROCESSING_MODES} or None. "
                f"Received: preprocessing={self.preprocessing!r} for '{self.name}'"
            )
        for source, weight_format in self.weight_formats.items():
            if source not in SOURCES or not isinstance(weight_format, WeightFormat):
                raise ValueError(
                    f"`weight_formats` of '{self.name}' must map sources {SOURCES} to WeightFormat objects. "
                    f"Received: {source!r}: {weight_format!r}"
                )
            unknown = sorted(set(weight_format.config) - set(self.config_fields))
            if unknown:
                raise ValueError(f"The {source} layout of '{self.name}' names unknown config field(s): {unknown}")

    @property
    def timm_config(self):
        """Config overrides under which the variant computes what timm's model does ({} without timm weights)."""
        weight_format = self.weight_formats.get("timm")
        return dict(weight_format.config) if weight_format is not None else {}

    @property
    def state_dict_source(self):
        """The first of ``"timm"``, ``"torchvision"``, ``"official"`` whose format reads state dicts, or None."""
        return next((source for source in ("timm", "torchvision", "official")
                     if source in self.weight_formats and self.weight_formats[source].reads_state_dicts), None)

    @property
    def port_weights(self):
        """``port(model, state_dict, progress=None)`` of the variant's state-dict source, or None."""
        source = self.state_dict_source
        if source is None:
            return None
        weight_format = self.weight_formats[source]
        return lambda model, state_dict, progress=None: weight_format.port_state_dict(model, state_dict, source,
                                                                                       progress)

    def input_shape_at(self, size):
        """Input shape without the batch axis, every spatial side ``size``.

        Args:
            size: an int, or None for sides of any size.

        Returns:
            ``(size,) * spatial_dims + (input_channels,)``, e.g. ``(64, 64, 3)``.
        """
        return (size,) * self.spatial_dims + (self.input_channels,)

    @property
    def default_input_shape(self) -> Tuple[int, ...]:
        """``input_shape_at(default_size)``, e.g. ``(224, 224, 3)``."""
        return self.input_shape_at(self.default_size)

    @property
    def config_fields(self) -> Tuple[str, ...]:
        """Names of the config fields the builder accepts as keyword arguments."""
        return tuple(f.name for f in dataclasses.fields(self.config))

    def with_config(self, **overrides):
        """Returns a copy of the spec whose config has ``overrides`` applied.

        Every override is checked and normalised by ``check_config_overrides``
        (type, choices, minimum of the config field; numpy scalars accepted).

        Raises:
            TypeError: for an unknown field or a wrongly typed value.
            ValueError: for a value outside what the field allows.
        """
        unknown = sorted(set(overrides) - set(self.config_fields))
        if unknown:
            raise TypeError(
                f"Unknown config field(s) for '{self.name}': {unknown}. "
                f"Allowed: {list(self.config_fields)}"
            )
        overrides = check_config_overrides(self.config, overrides, self.entrypoint)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **overrides))


def register(spec):
    """Adds ``spec`` to the registry.

    Args:
        spec: a ``ModelSpec``.

    Returns:
        The spec.

    Raises:
        ValueError: if a spec of that name is already registered.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"`spec` must be a ModelSpec. Received: {type(spec).__name__}")
    if spec.name in _REGISTRY:
        raise ValueError(f"A model named '{spec.name}' is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern="*"):
    """Sorted names of the registered models matching a shell-style ``pattern``.

    Args:
        pattern: fnmatch pattern, e.g. ``"seres*"``.

    Returns:
        A list of names.

    Example:
    >>> "resnext50_32x4d" in list_models("resnext*")
    True
    """
    if not isinstance(pattern, str):
        raise TypeError(f"`pattern` must be a str. Received: pattern={pattern!r}")
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_spec(name):
    """Returns the ``ModelSpec`` registered under ``name``.

    Raises:
        ValueError: naming the known models when ``name`` is unknown.
    """
    if name not in _REGISTRY:
        base, _, tag = str(name).partition(".")
        if tag and base in _REGISTRY:
            raise ValueError(
                f"Unknown model name: {name!r}: '{base}' is the model and {tag!r} a pretrained tag; use "
                f"create_model({base!r}, weights={tag!r})."
            )
        raise ValueError(f"Unknown model name: {name!r}. Known models: {list_models()}")
    return _REGISTRY[name]
