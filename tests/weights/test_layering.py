"""keras_convzoo.weights sits below the applications package: it imports nothing of it.

``port_timm`` and ``convert_timm_weights`` moved up to the applications
package; their old paths in ``keras_convzoo.weights`` answer for one release
with a ``DeprecationWarning``.
"""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from keras_convzoo import applications, weights
from keras_convzoo.weights import _moved

WEIGHTS_DIR = Path(weights.__file__).parent
UPPER = "keras_convzoo.applications"


def _imported_modules(path):
    """Every module an ``import`` / ``from ... import`` of the file names (at any depth), and string constants."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(UPPER):
            names.add(node.value)  # importlib.import_module("keras_convzoo.applications...") and the like
    return names


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_weights_modules_import_nothing_of_applications(path):
    upward = sorted(n for n in _imported_modules(path) if n == UPPER or n.startswith(UPPER + "."))
    assert not upward, f"{path.name} reaches up to {upward}"
    assert UPPER not in path.read_text(encoding="utf-8")  # `grep -rn keras_convzoo.applications weights` is empty


@pytest.mark.parametrize("statement", ["from keras_convzoo.weights import port_state_dict, save",
                                       "from keras_convzoo.applications import port_timm, convert_timm_weights"])
def test_fresh_process_imports(statement):
    result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_moved_names_answer_at_their_old_paths_with_a_deprecation_warning(monkeypatch):
    monkeypatch.setattr(_moved, "_WARNED", set())
    for module, names in ((weights, ("port_timm", "convert_timm_weights", "port_ccnn")),
                          (weights.timm, ("port_timm", "convert_timm_weights")), (weights.ccnn, ("port_ccnn",))):
        for name in names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = getattr(module, name)
                again = getattr(module, name)
            assert value is again is getattr(applications, name)
            messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
            expected = f"{module.__name__}.{name} moved to keras_convzoo.applications.{name}; the old path is removed in 0.2."
            assert messages == [expected]
    assert not {"port_timm", "convert_timm_weights", "port_ccnn"} & set(weights.__all__)
    assert {"port_timm", "convert_timm_weights", "port_ccnn"} <= set(applications.__all__)
    assert not hasattr(weights, "port_nothing") and not hasattr(weights.timm, "port_nothing")
    with pytest.raises(AttributeError, match="module 'keras_convzoo.weights' has no attribute 'port_nothing'"):
        weights.__getattr__("port_nothing")
