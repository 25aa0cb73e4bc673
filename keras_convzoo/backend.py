"""The one place keras_convzoo imports Keras from.

Keras 3 is used by default. With ``TF_USE_LEGACY_KERAS=1`` (TensorFlow's own
switch) the package runs on ``tf_keras`` (Keras 2) instead, which is what
tensorflow-model-optimization (QAT, pruning) accepts.

Every module of the package does ``from keras_convzoo.backend import keras``
and uses only the API common to both Kerases; numerical work inside layers
goes through TensorFlow ops.
"""

import contextlib
import os

import tensorflow as tf

_TRUE = ("1", "true", "yes", "on")

#: True when the package runs on tf_keras (Keras 2).
LEGACY_KERAS = os.environ.get("TF_USE_LEGACY_KERAS", "0").strip().lower() in _TRUE

if LEGACY_KERAS:
    import tf_keras as keras  # noqa: F401
else:
    import keras  # noqa: F401

    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(
            "keras_convzoo needs Keras 3 (or tf_keras with TF_USE_LEGACY_KERAS=1); "
            f"found keras {keras.__version__}."
        )

#: Name of the Keras in use: "keras" (Keras 3) or "tf_keras" (Keras 2).
KERAS_NAME = "tf_keras" if LEGACY_KERAS else "keras"


def register_serializable(cls):
    """Registers a Layer class under the package name ``keras_convzoo``.

    Args:
        cls: the class to register.

    Returns:
        The class, registered for ``.keras`` saving and ``from_config``.
    """
    return keras.saving.register_keras_serializable(package="keras_convzoo")(cls)


def get_source_inputs(tensor):
    """Returns the model inputs a symbolic tensor depends on (both Kerases)."""
    return keras.utils.get_source_inputs(tensor)


def is_keras_tensor(x):
    """True when ``x`` is a symbolic Keras tensor (both Kerases)."""
    if LEGACY_KERAS:
        return keras.backend.is_keras_tensor(x)
    return isinstance(x, keras.KerasTensor)


__all__ = [
    "tf",
    "keras",
    "LEGACY_KERAS",
    "KERAS_NAME",
    "register_serializable",
    "get_source_inputs",
    "is_keras_tensor",
]


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Sets Keras' global dtype policy for the block and restores the previous one (Keras 3).

    Layers take their policy when they are constructed, so a model built in
    the block computes and stores in ``policy``.

    Args:
        policy: a policy name (``"mixed_bfloat16"``) or a ``keras.DTypePolicy``
            (or ``DTypePolicyMap``).

    Example:
    >>> with dtype_policy_scope("mixed_bfloat16"):
    ...     model = keras_convzoo.create_model("resnext50_32x4d")
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
