"""The model registry: one ``ModelSpec`` per variant, one source of truth."""

import dataclasses
import fnmatch
from typing import Any, Callable, Mapping, Optional, Tuple

from keras_convzoo.weights.formats import SOURCES, WeightFormat

_REGISTRY = {}

#: Input scalings of ``keras.applications.imagenet_utils.preprocess_input``.
PREPROCESSING_MODES = ("torch", "tf", "caffe")


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
        """Returns a copy of the spec whose config has ``overrides`` applied."""
        unknown = sorted(set(overrides) - set(self.config_fields))
        if unknown:
            raise TypeError(
                f"Unknown config field(s) for '{self.name}': {unknown}. "
                f"Allowed: {list(self.config_fields)}"
            )
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


def create_model(name, **kwargs):
    """Builds a registered model by name.

    Args:
        name: a name from ``list_models()``.
        **kwargs: the keras.applications arguments (``include_top``,
            ``weights``, ``input_tensor``, ``input_shape``, ``pooling``,
            ``classes``, ``classifier_activation``, ``name``) and the
            family's config fields.

    Returns:
        A ``keras.Model``.

    Example:
    >>> model = create_model("resnext50_32x4d", include_top=False, pooling="avg")
    """
    from keras_convzoo.applications._builder import build_application

    return build_application(get_spec(name), **kwargs)
