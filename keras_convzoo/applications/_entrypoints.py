"""The public constructors: one variant-row shape (``Variant``) and one generator (``make_entrypoint``).

Every family declares its variants as a tuple of ``Variant`` rows,
registers them with ``register_variants`` and makes each public constructor
with ``make_entrypoint``, which gives it keras.applications' signature (a
real ``inspect.signature``, for ``help()`` and IDEs), the family's optional
variant selector (MobileNetV2's ``alpha``, ShuffleNetV2's
``width_multiplier``, CCNN's ``depth``/``width``/``kernel_hidden``) and a
docstring assembled here from the family's summary and the registry's facts.
The constructor's body is ``build_application(spec, ...)``.

Example (a family module):
>>> VARIANTS = (Variant("resnext50_32x4d", "ResNeXt50", {"cardinality": 32, "base_width": 4}, 25_028_904),)
>>> SPECS = register_variants(VARIANTS, ResNetConfig, family="resnext", body=residual_body)
>>> ResNeXt50 = make_entrypoint("ResNeXt50", VARIANTS, __name__, doc="Instantiates {title}: {params:.1f}M.",
...                             example=">>> model = {entry}(include_top=False)")
"""

import dataclasses
import inspect
import os
import textwrap
from typing import Any, Mapping, Optional, Tuple

from keras_convzoo.applications._builder import APPLICATION_ARGS, build_application
from keras_convzoo.applications._registry import (
    ModelSpec,
    get_spec,
    register,
    to_python,
)
from keras_convzoo.weights.formats import SOURCES

#: keras.applications.ResNet50's argument order (ResNet, ConvNeXt, EfficientNet, ...).
RESNET50_ORDER = (
    "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation", "name",
)
#: keras.applications.MobileNetV2's order without ``alpha``: ``input_shape`` first (MobileNet, MobileNetV2).
MOBILENET_V2_ORDER = (
    "input_shape", "include_top", "weights", "input_tensor", "pooling", "classes", "classifier_activation", "name",
)
#: The defaults of the keras.applications arguments: ``build_application``'s (``weights=None``).
APPLICATION_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(build_application).parameters.items()
    if name in APPLICATION_ARGS
}
#: The weight sources in prose.
_SOURCE_NAMES = {"keras": "keras.applications", "timm": "timm", "torchvision": "torchvision",
                 "official": "the official code"}
#: Input layouts by spatial rank, for the ``input_shape`` docs.
_LAYOUTS = {1: "``(length, C)``", 2: "``(H, W, C)``", 3: "``(D, H, W, C)``"}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a family's variant table; every family's table is a tuple of these.

    Attributes:
        name: registry name (timm's, torchvision's or the official one).
        entrypoint: the public constructor that builds it (``"ResNeXt50"``).
        config: the family config fields that make this variant, e.g.
            ``{"depths": (3, 4, 23, 3), "base_width": 8}`` (the family
            config class's defaults for the others).
        reference_params: trainable parameters of the reference
            implementation (asserted by the tests).
        selector: the values of the constructor's selector arguments that
            build it, e.g. ``(0.35,)`` for ``MobileNetV2(alpha=0.35)``; ``()``
            when the constructor builds this variant only.
        title: the variant in prose for its docstring (``"SE-ResNeXt-50
            (32x4d)"``); default: the constructor's name.
    """

    name: str
    entrypoint: str
    config: Mapping[str, Any]
    reference_params: Optional[int]
    selector: Tuple[Any, ...] = ()
    title: str = ""


@dataclasses.dataclass(frozen=True)
class Selector:
    """The arguments of a constructor that pick one of its family's variants.

    Attributes:
        arguments: their names, e.g. ``("alpha",)`` or ``("depth", "width",
            "kernel_hidden")``.
        descriptions: one phrase per argument, for the docstring.
        default: the selector values of the default variant, e.g. ``(1.0,)``.
        after: the keras.applications argument they follow in the signature
            (``"input_shape"`` for MobileNetV2's ``alpha``, ``"name"`` for
            the last place); None puts them first.
        name_format: None: the (one, numeric) argument must name a
            registered variant, matched as ``select_variant`` does (Python or
            numpy numbers, within float32 rounding); otherwise TypeError or
            ValueError. A format string (``"ccnn_{depth}_{width}"``): the
            arguments are fields of the family config; values that no
            variant has build the default variant with them as overrides,
            named by this format unless ``name`` is given.
    """

    arguments: Tuple[str, ...]
    descriptions: Tuple[str, ...]
    default: Tuple[Any, ...]
    after: Optional[str] = None
    name_format: Optional[str] = None

    def __post_init__(self):
        if not (len(self.arguments) == len(self.descriptions) == len(self.default)):
            raise ValueError("A Selector needs one description and one default per argument.")
        if self.name_format is None and len(self.arguments) != 1:
            raise ValueError("A Selector that must name a registered variant has exactly one argument.")


def select_variant(argument, value, variants, entrypoint):
    """The key of ``variants`` (numbers, e.g. MobileNetV2's alphas) that a number argument names.

    Python and numpy numbers are accepted (``np.float32(0.35)`` names
    ``0.35``: equal within float32 rounding); bools and other types are not.

    Args:
        argument: the argument's name, for the messages (``"alpha"``).
        value: the value received.
        variants: a mapping (or collection) whose keys are the allowed numbers.
        entrypoint: the constructor's name, for the messages.

    Returns:
        The matching key of ``variants``.

    Raises:
        TypeError: ``value`` is no number (a bool, a str...).
        ValueError: ``value`` is none of the keys; one line listing them.

    Example:
    >>> select_variant("alpha", np.float32(0.35), {0.35: "a", 1.0: "b"}, "MobileNetV2")
    0.35
    """
    number = to_python(value)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise TypeError(
            f"`{argument}` must be a number, one of {sorted(variants)}. Received: {argument}={value!r}"
        )
    for key in variants:
        if abs(key - number) <= 1e-6 * max(1.0, abs(key)):
            return key
    raise ValueError(
        f"`{argument}` must be one of {sorted(variants)} for {entrypoint}. Received: {argument}={value!r}"
    )


def register_variants(variants, config, derived=None, **family):
    """Registers one ``ModelSpec`` per row of a family's variant table.

    Args:
        variants: the family's ``Variant`` rows.
        config: the family's config dataclass; each row's config is
            ``config(**variant.config)``.
        derived: optional ``derived(variant, config) -> dict`` of the
            ``ModelSpec`` fields that follow from the row (``timm_name``,
            ``reference``...); they take precedence over ``family``.
        **family: the ``ModelSpec`` fields every variant shares (``family``,
            ``body``, ``paper``, ``weight_formats``...).

    Returns:
        ``{name: ModelSpec}`` in table order.
    """
    specs = {}
    for variant in variants:
        variant_config = config(**variant.config)
        fields = dict(family, **(derived(variant, variant_config) if derived else {}))
        specs[variant.name] = register(
            ModelSpec(
                name=variant.name,
                entrypoint=variant.entrypoint,
                config=variant_config,
                reference_params=variant.reference_params,
                **fields,
            )
        )
    return specs


def make_entrypoint(entrypoint, variants, module, *, doc, example, order=RESNET50_ORDER, selector=None, notes=None):
    """Makes a public constructor: keras.applications' signature, a generated docstring, ``build_application``.

    The constructor's parameters are ``order`` (the keras.applications
    arguments, with ``build_application``'s defaults) with the selector's
    arguments inserted after ``selector.after``, then ``**kwargs`` (config
    overrides); ``inspect.signature`` and ``help()`` show them. Calls bind
    as a Python function of that signature would (positional or keyword).

    Args:
        entrypoint: the constructor's name, e.g. ``"MobileNetV2"``.
        variants: the family's ``Variant`` rows (registered already); those
            of this ``entrypoint`` are the ones it builds.
        module: ``__name__`` of the module that exposes it.
        doc: summary and body of the docstring, a ``str.format`` template
            with ``entry``, ``name``, ``title``, ``params`` (millions),
            ``spec``, ``config`` and ``variant`` of the (default) variant.
        example: the Example section (lines starting with ``>>>``), same
            template fields.
        order: ``RESNET50_ORDER`` or ``MOBILENET_V2_ORDER``.
        selector: the ``Selector`` of a constructor of several variants.
        notes: optional ``{argument: text}`` appended to the generated
            description of an argument (``"weights"``, ``"kwargs"``...).

    Returns:
        The constructor.

    Raises:
        ValueError: a table that does not fit (no variant, several
            variants without selector, selector values that do not fit).
    """
    rows = [v for v in variants if v.entrypoint == entrypoint]
    if sorted(order) != sorted(APPLICATION_ARGS):
        raise ValueError(f"`order` must hold the keras.applications arguments {APPLICATION_ARGS}. Received: {order}")
    if selector is None:
        if len(rows) != 1 or rows[0].selector:
            raise ValueError(f"{entrypoint} needs a Selector to choose among its variants: {[v.name for v in rows]}")
        default_row = rows[0]
    else:
        if any(len(v.selector) != len(selector.arguments) for v in rows):
            raise ValueError(f"Every variant of {entrypoint} needs one selector value per {selector.arguments}.")
        by_key = {tuple(v.selector): v for v in rows}
        if len(by_key) != len(rows) or tuple(selector.default) not in by_key:
            raise ValueError(f"The variants of {entrypoint} need distinct selector values, the default among them.")
        default_row = by_key[tuple(selector.default)]
    specs = {tuple(v.selector): get_spec(v.name) for v in rows}
    default_spec = specs[tuple(default_row.selector)]

    names = list(order)
    if selector is not None:
        at = 0 if selector.after is None else names.index(selector.after) + 1
        names[at:at] = selector.arguments
    selector_defaults = dict(zip(selector.arguments, selector.default)) if selector else {}
    parameters = [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=selector_defaults[n] if n in selector_defaults else APPLICATION_DEFAULTS[n])
        for n in names
    ]
    parameters.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    signature = inspect.Signature(parameters)

    def constructor(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{entrypoint}() {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        overrides = arguments.pop("kwargs")
        spec = default_spec
        if selector is not None:
            values = tuple(arguments.pop(a) for a in selector.arguments)
            if selector.name_format is None:
                choices = {key[0]: key for key in specs}
                spec = specs[choices[select_variant(selector.arguments[0], values[0], choices, entrypoint)]]
            else:
                values = tuple(to_python(v) for v in values)
                try:
                    spec = specs.get(values)
                except TypeError:  # an unhashable value (a list): build_application names the wrong type
                    spec = None
                if spec is None:
                    spec = default_spec
                    named = dict(zip(selector.arguments, values))
                    arguments["name"] = arguments["name"] or selector.name_format.format(**named)
                overrides = dict(zip(selector.arguments, values), **overrides)
        return build_application(spec, **arguments, **overrides)

    constructor.__name__ = constructor.__qualname__ = entrypoint
    constructor.__module__ = module
    constructor.__signature__ = signature
    constructor.__doc__ = _docstring(entrypoint, rows, default_row, default_spec, names, selector, doc, example,
                                     notes or {})
    return constructor


# ---------------------------------------------------------------------------------------------
# The docstrings


def _code(value):
    return f"``{value!r}``"


def _input_shape_doc(spec):
    ranks = spec.accepted_spatial_dims or (spec.spatial_dims,)
    layouts = " or ".join(_LAYOUTS[r] for r in ranks)
    return (
        f"shape without the batch axis, channels last: {layouts}; sizes may be None (any size), numpy ints "
        f"are fine. Default {_code(spec.default_input_shape)} with the top and {_code(spec.input_shape_at(None))} "
        f"without; every spatial size >= {spec.min_size}. A "
        "channels-first shape such as ``(3, 224, 224)`` is refused with the channels_last spelling."
    )


def _weights_doc(rows, spec):
    sources = [s for s in SOURCES if s in spec.weight_formats]
    names = [v.name for v in rows]
    pattern = names[0] if len(names) == 1 else os.path.commonprefix(names) + "*"
    parts = ["None (random initialisation)"]
    if sources:
        parts.append(
            f'``"imagenet"`` (the default pretrained weights) or an upstream tag, where '
            f'{" or ".join(_SOURCE_NAMES[s] for s in sources)} {"publishes" if len(sources) == 1 else "publish"} '
            f'weights of the variant (``keras_convzoo.list_pretrained("{pattern}")`` lists them; '
            "downloaded once and cached, read without torch, tags match case-insensitively)"
        )
    parts.append("the path to a ``.weights.h5`` file (one written by ``keras_convzoo.weights.save`` records its "
                 "layout, which is rebuilt)")
    readers = [s for s in sources if spec.weight_formats[s].reads_state_dicts]
    if readers:
        parts.append(f"a state dict file of {' or '.join(_SOURCE_NAMES[s] for s in readers)} (``.safetensors``, "
                     "``.pth``, ``.bin``, ``.npz``)")
    text = ", ".join(parts[:-1]) + " or " + parts[-1] + "."
    layouts = [
        f"{_SOURCE_NAMES[source]}: ``{', '.join(f'{k}={v!r}' for k, v in spec.weight_formats[source].config.items())}``"
        for source in sources if spec.weight_formats[source].config
    ]
    if layouts:
        text += (" Weights of a source whose model computes otherwise build its layout (" + "; ".join(layouts)
                 + ") and refuse a conflicting keyword argument.")
    return text


def _name_doc(rows, spec, selector):
    if selector is None:
        return f"model name (default: the registry name, ``{spec.name}``)."
    text = f"model name (default: the registry name of the variant, e.g. ``{spec.name}``"
    if selector.name_format:
        text += f"; ``{selector.name_format}`` for values no variant has"
    return text + ")."


def _kwargs_doc(spec, selector):
    taken = set(selector.arguments) if selector else set()
    fields = [f for f in spec.config_fields if f not in taken]
    return (
        f"overrides of the family config ``{type(spec.config).__name__}``: {', '.join(fields)}; each is checked "
        "against the field's type (numpy numbers accepted, bools are no ints), choices (case-insensitive) and "
        "minimum. Any other keyword is a TypeError."
    )


def _selector_docs(rows, selector):
    docs = {}
    if selector.name_format is None:
        argument, = selector.arguments
        choices = sorted(v.selector[0] for v in rows)
        variants = ", ".join(f"{v.selector[0]!r} ``{v.name}``" for v in sorted(rows, key=lambda v: v.selector))
        docs[argument] = (
            f"{selector.descriptions[0]}, one of {', '.join(map(repr, choices))} (a Python or numpy number: "
            f"``np.float32({choices[0]!r})`` selects {choices[0]!r}); selects the registered variant: {variants}."
        )
        return docs
    for argument, description, default in zip(selector.arguments, selector.descriptions, selector.default):
        docs[argument] = f"{description} (default {default!r})."
    keys = "; ".join(
        f"``{', '.join(f'{a}={x!r}' for a, x in zip(selector.arguments, v.selector))}`` is ``{v.name}``" for v in rows
    )
    docs[selector.arguments[-1]] += (
        f" {keys}; other values build the family with them (named ``{selector.name_format}``)."
    )
    return docs


def _raises_doc(rows, selector):
    type_error = "an unknown keyword argument, or a wrongly typed one"
    value_error = "a value outside what is allowed, naming the argument and the value received"
    if selector is not None and selector.name_format is None:
        argument, = selector.arguments
        choices = ", ".join(repr(c) for c in sorted(v.selector[0] for v in rows))
        type_error += f"; ``{argument}`` is no number (a str, a bool...)"
        value_error += f"; ``{argument}`` is none of {choices}"
    return {"TypeError": type_error + ".", "ValueError": value_error + "."}


def _entry(name, text):
    return textwrap.fill(f"{name}: {text}", width=100, initial_indent="    ", subsequent_indent="        ",
                         break_long_words=False, break_on_hyphens=False)


def _paragraph(text):
    return textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="    ",
                         break_long_words=False, break_on_hyphens=False)


def _docstring(entrypoint, rows, row, spec, names, selector, doc, example, notes):
    """The constructor's docstring: the family's summary, then Args, Returns, Raises, Reference, Example."""
    fields = dict(entry=entrypoint, name=spec.name, title=row.title or entrypoint,
                  params=(spec.reference_params or 0) / 1e6, spec=spec, config=spec.config, variant=row)
    include_top = (
        "whether to add the classifier: global average pooling"
        + (", the family's head norm" if spec.head is not None else "")
        + (", dropout when ``drop_rate`` > 0" if "drop_rate" in spec.config_fields else "")
        + ', ``Dense(classes, activation=classifier_activation, name="predictions")``.'
    )
    pooling = (
        'with ``include_top=False``: None (the feature map), ``"avg"`` or ``"max"`` (global pooling to a vector'
        + (", then the family's head norm" if spec.head is not None else "")
        + "); any case."
    )
    arguments = {
        "include_top": include_top,
        "weights": _weights_doc(rows, spec),
        "input_tensor": "optional Keras tensor (e.g. the output of ``keras.Input``) to use as the model input; with "
                        "``input_shape`` too, the two must agree.",
        "input_shape": _input_shape_doc(spec),
        "pooling": pooling,
        "classes": "number of classes with ``include_top=True`` (an int or a numpy int); with pretrained weights and "
                   "the top, the weights' classes.",
        "classifier_activation": "activation of the classifier: a Keras activation name (any case), a callable, or "
                                 "None for logits.",
        "name": _name_doc(rows, spec, selector),
        "**kwargs": _kwargs_doc(spec, selector),
    }
    if selector is not None:
        arguments.update(_selector_docs(rows, selector))
    for argument, note in notes.items():
        key = "**kwargs" if argument == "kwargs" else argument
        if key not in arguments:
            raise ValueError(f"A note for {entrypoint} names no argument: {argument!r}")
        arguments[key] += " " + " ".join(inspect.cleandoc(note).split())
    lines = [inspect.cleandoc(doc.format(**fields)), "", "Args:"]
    lines += [_entry(n, arguments[n]) for n in names + ["**kwargs"]]
    lines += ["", "Returns:", "    A ``keras.Model``.", "", "Raises:"]
    lines += [_entry(error, text) for error, text in _raises_doc(rows, selector).items()]
    if spec.paper:
        lines += ["", "Reference:"] + [_paragraph(paper.strip() + ".") for paper in spec.paper.split(";")]
    lines += ["", "Example:", inspect.cleandoc(example.format(**fields))]
    return "\n".join(lines) + "\n"
