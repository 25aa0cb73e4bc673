"""The package's layers import only what lies below them (docs/architecture.md writes the map down).

Every ``import`` and ``from ... import`` of every module is read from its
source (function-level imports too, so a lazy import cannot hide an upward
reach), as are string constants naming a package module (``importlib``).
"""

import ast
from pathlib import Path

import pytest

import keras_convzoo

PACKAGE = Path(keras_convzoo.__file__).parent

#: What each part of the package may import (besides itself). Everything that is not listed is above it.
ALLOWED = {
    "backend": set(),
    "progress": set(),
    "input_shapes": {"backend"},
    "data": set(),
    "ops": {"backend"},
    "layers": {"backend", "ops"},
    "blocks": {"backend", "ops", "layers"},
    "weights": {"backend", "progress", "ops", "layers"},
    "applications": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "weights"},
    "deploy": {"backend", "progress", "ops", "layers", "blocks"},
    "export": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "weights", "applications", "deploy"},
    "quantization": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "applications", "deploy",
                     "export"},
    "profile": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "weights", "applications",
                "deploy", "export"},
    "integrations": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "weights", "applications",
                     "deploy", "export"},
    "testing": {"backend", "progress", "input_shapes", "ops", "layers", "blocks", "weights", "applications",
                "deploy", "export", "profile"},
}
#: May import anything of the package.
TOP = {"__init__", "cli"}


def _part(module):
    """``keras_convzoo.export.tflite`` -> ``export``; None outside the package."""
    pieces = module.split(".")
    if pieces[0] != "keras_convzoo":
        return None
    return pieces[1] if len(pieces) > 1 else "__init__"


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "keras_convzoo":  # ``from keras_convzoo import deploy``: the names say what
                yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield node.lineno, "keras_convzoo.<relative>"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("keras_convzoo."):
            yield node.lineno, node.value.split()[0].rstrip(".:,")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0].removesuffix(".py")
        yield str(relative), part, path


def test_every_part_of_the_package_is_in_the_map():
    parts = {part for _, part, _ in _modules()}
    assert parts <= set(ALLOWED) | TOP, sorted(parts - set(ALLOWED) - TOP)


@pytest.mark.parametrize("relative, part, path", list(_modules()), ids=[m[0] for m in _modules()])
def test_module_imports_only_lower_layers(relative, part, path):
    if part in TOP:
        return
    wrong = []
    for line, module in _imports(path):
        target = _part(module)
        if module == "keras_convzoo.<relative>":
            wrong.append(f"{relative}:{line} relative import (use absolute keras_convzoo.* imports)")
        elif target is None or target == part:
            continue
        elif module == "keras_convzoo.__version__":
            continue  # the version string
        elif target not in ALLOWED[part]:
            wrong.append(f"{relative}:{line} imports {module} ({part} may import {sorted(ALLOWED[part])})")
    assert not wrong, "\n".join(wrong)


def test_the_map_has_no_cycle():
    seen, order = set(), []

    def visit(part, stack):
        assert part not in stack, f"cycle: {' -> '.join(stack + [part])}"
        if part in seen:
            return
        for lower in ALLOWED[part]:
            visit(lower, stack + [part])
        seen.add(part)
        order.append(part)

    for part in ALLOWED:
        visit(part, [])
    assert len(order) == len(ALLOWED)
