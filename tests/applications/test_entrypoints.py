"""Every public constructor comes from one generator, with keras.applications' signature and one row type."""

import importlib
import inspect
import re

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import applications
from keras_convzoo.applications._entrypoints import Selector, Variant, make_entrypoint
from keras_convzoo.backend import keras

FAMILY_MODULES = ("resnext", "se_resnet", "mobilenet_v2", "shufflenet_v2", "convnext", "replknet", "ccnn")
CONSTRUCTORS = sorted(n for n in applications.__all__ if n[0].isupper() and n not in ("ModelSpec", "FeatureInfo"))

_KERAS_TAIL = ("weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000, "
               "classifier_activation='softmax', name=None, **kwargs")
RESNET50 = "(include_top=True, " + _KERAS_TAIL + ")"
#: The signatures users call today (argument order and defaults are API).
SIGNATURES = {
    "MobileNetV2": "(input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None, pooling=None, "
                   "classes=1000, classifier_activation='softmax', name=None, **kwargs)",
    "ShuffleNetV2": "(width_multiplier=1.0, include_top=True, " + _KERAS_TAIL + ")",
    "CCNN": "(input_shape=None, include_top=True, weights=None, input_tensor=None, pooling=None, classes=1000, "
            "classifier_activation='softmax', name=None, depth=4, width=140, kernel_hidden=32, **kwargs)",
}


@pytest.mark.parametrize("entrypoint", CONSTRUCTORS)
def test_signature_is_keras_applications_order(entrypoint):
    fn = getattr(kcz, entrypoint)
    assert str(inspect.signature(fn)) == SIGNATURES.get(entrypoint, RESNET50)
    assert fn.__name__ == fn.__qualname__ == entrypoint and fn.__module__.startswith("keras_convzoo.applications.")
    assert getattr(importlib.import_module(fn.__module__), entrypoint) is fn  # picklable by reference


def test_keras_applications_orders_match_ours():
    # Our weights default is None (no download on construction); everything else is keras.applications'.
    def order(fn):
        return [p for p in inspect.signature(fn).parameters if p not in ("kwargs", "include_preprocessing")]

    assert order(kcz.ResNeXt50) == order(keras.applications.ResNet50)
    assert order(kcz.ConvNeXtTiny) == order(keras.applications.ConvNeXtTiny)
    assert order(kcz.MobileNetV2) == order(keras.applications.MobileNetV2)


@pytest.mark.parametrize("entrypoint", CONSTRUCTORS)
def test_docstring_is_generated_with_every_argument_in_order(entrypoint):
    fn = getattr(kcz, entrypoint)
    doc = fn.__doc__
    for section in ("Args:", "Returns:", "Raises:", "Reference:", "Example:"):
        assert f"\n{section}\n" in doc, (entrypoint, section)
    args = doc.split("\nArgs:\n", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^    (\*\*kwargs|\w+):", args, re.MULTILINE)
    expected = [("**" if p.kind is p.VAR_KEYWORD else "") + p.name for p in inspect.signature(fn).parameters.values()]
    assert documented == expected
    assert f">>> model = {entrypoint}(" in doc


def test_every_family_declares_its_variants_as_variant_rows():
    rows = []
    for module_name in FAMILY_MODULES:
        module = importlib.import_module(f"keras_convzoo.applications.{module_name}")
        assert isinstance(module.VARIANTS, tuple) and all(type(v) is Variant for v in module.VARIANTS), module_name
        assert list(module.SPECS) == [v.name for v in module.VARIANTS], module_name
        rows += module.VARIANTS
    assert sorted(v.name for v in rows) == kcz.list_models()
    for row in rows:
        spec = kcz.get_spec(row.name)
        assert spec.entrypoint == row.entrypoint and spec.reference_params == row.reference_params
        assert all(getattr(spec.config, field) == value for field, value in row.config.items()), row.name


def test_positional_and_duplicate_arguments_bind_as_python_would():
    tiny = kcz.get_spec("seresnet18").test_overrides
    model = kcz.SEResNet18(True, None, None, (32, 32, 3), None, 3, None, "mine", **tiny)
    assert model.name == "mine" and tuple(model.output_shape) == (None, 3)
    with pytest.raises(TypeError, match=r"^SEResNet18\(\) too many positional arguments"):
        kcz.SEResNet18(True, None, None, (32, 32, 3), None, 3, None, "mine", "extra")
    with pytest.raises(TypeError, match=r"^ShuffleNetV2\(\) multiple values for argument 'width_multiplier'"):
        kcz.ShuffleNetV2(1.0, width_multiplier=1.0)
    with pytest.raises(TypeError, match=r"SEResNet18\(\) got unknown argument\(s\): \['alpha'\]"):
        kcz.SEResNet18(alpha=1.0)


def test_open_selector_builds_other_values_of_the_family():
    small = kcz.CCNN(input_shape=(None, None, 3), classes=3, depth=np.int64(2), width=8, kernel_hidden=8,
                     kernel_size=9)
    blocks = {layer.name.split("_")[0] for layer in small.layers if layer.name.startswith("block")}
    assert small.name == "ccnn_2_8" and blocks == {"block1", "block2"}
    assert small.get_layer("stem_conv").filters == 8
    assert kcz.CCNN(input_shape=(None, 1), classes=2, depth=6, width=380, kernel_hidden=64,
                    kernel_size=9, name=None).name == "ccnn_6_380"


def test_generator_refuses_tables_that_do_not_fit():
    rows = (Variant("resnext50_32x4d", "X", {}, None, selector=(1.0,)),
            Variant("resnext101_32x8d", "X", {}, None, selector=(2.0,)))
    with pytest.raises(ValueError, match="needs a Selector"):
        make_entrypoint("X", rows, __name__, doc="", example="")
    with pytest.raises(ValueError, match="default among them"):
        make_entrypoint("X", rows, __name__, doc="", example="", selector=Selector(("k",), ("k",), (3.0,)))
    with pytest.raises(ValueError, match="exactly one argument"):
        Selector(("a", "b"), ("a", "b"), (1, 2))
    with pytest.raises(ValueError, match="keras.applications arguments"):
        make_entrypoint("X", rows[:1], __name__, doc="", example="", order=("include_top",))
