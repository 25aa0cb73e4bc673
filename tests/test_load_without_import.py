"""What Keras says when a ``.keras`` file with zoo layers is loaded in a process that never imported keras_convzoo.

Keras 3.15 (``keras/src/saving/serialization_lib.py``, ``_retrieve_class_or_fn``)
resolves a layer's config by its ``registered_name`` (``"keras_convzoo>GELU"``)
in the registry that ``register_keras_serializable`` fills at import time,
then imports the config's ``module`` only when its top-level package is one
of ``keras``, ``keras_hub``, ``keras_cv``, ``keras_nlp`` (a fixed set, no hook
or entry point extends it); otherwise it raises ``TypeError("Could not locate
class ...")``, and the functional model's ``from_config`` wraps that
``TypeError`` in its own, whose first line names only Keras' ``Functional``.
So no mechanism lets the package make the first line say ``import
keras_convzoo``: the user imports it before ``keras.saving.load_model``.

This test pins that behaviour: when a future Keras imports the module itself
or names it in the first line, it fails and the documentation can change.
"""

import subprocess
import sys

import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras
from keras_convzoo.layers import GELU

LOAD = """
import sys
import keras
try:
    model = keras.saving.load_model(sys.argv[1])
except Exception as e:
    print("imported:", "keras_convzoo" in sys.modules)
    print("type:", type(e).__name__)
    print("message:", str(e).replace("\\n", " | "))
    sys.exit(3)
print("imported:", "keras_convzoo" in sys.modules)
print("loaded:", type(model.layers[-1]).__module__, type(model.layers[-1]).__name__)
"""


def _load_in_fresh_process(path, prelude=""):
    result = subprocess.run([sys.executable, "-c", prelude + LOAD, str(path)], capture_output=True, text=True,
                            timeout=300)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return result, lines


@pytest.mark.skipif(LEGACY_KERAS, reason="documents Keras 3's loader; the fresh process imports Keras 3")
def test_loading_without_importing_the_package_fails_with_keras_generic_first_line(tmp_path):
    inputs = keras.Input((4,))
    path = tmp_path / "gelu.keras"
    keras.Model(inputs, GELU(name="gelu")(inputs)).save(path)

    result, lines = _load_in_fresh_process(path)
    assert result.returncode == 3, result.stdout + result.stderr[-2000:]
    assert lines["imported"] == "False"  # Keras did not import the layer's module
    assert lines["type"] == "TypeError"
    first, _, rest = lines["message"].partition(" | ")
    assert first.startswith(
        "<class 'keras.src.models.functional.Functional'> could not be deserialized properly."
    ), first
    assert "keras_convzoo" not in first  # the first line does not name the package
    # the cause, further down: Keras' generic lookup failure, with the config that names the module
    assert "Could not locate class 'GELU'" in rest
    assert "'module': 'keras_convzoo.layers.gelu'" in rest
    assert "'registered_name': 'keras_convzoo>GELU'" in rest

    result, lines = _load_in_fresh_process(path, prelude="import keras_convzoo\n")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert lines["loaded"] == "keras_convzoo.layers.gelu GELU"
