"""What the keras-cv and keras-hub adapters share: pyramid levels and the trunk build."""

import importlib
import os
import sys

from keras_convzoo.applications.features import trunk_and_feature_info
from keras_convzoo.backend import LEGACY_KERAS

#: Pyramid levels the adapters expose: ``Pn`` is the deepest stage of stride ``2**n``.
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")

#: Builder arguments an adapter does not take: it builds the trunk itself
#: (no classifier, no pooling) and must be re-creatable from its config.
_REFUSED = ("include_top", "pooling", "classes", "classifier_activation", "input_tensor", "name")


def import_optional(module, pip_name, version):
    """Imports keras-cv / keras-hub, or raises an ImportError naming the pip command.

    keras-cv picks Keras 2 or 3 by what ``tf.keras`` resolves to, which
    tensorflow-model-optimization switches to tf_keras (it sets
    ``TF_USE_LEGACY_KERAS=1`` when imported). Under Keras 3 the first import
    therefore runs with ``TF_USE_LEGACY_KERAS=0`` (restored afterwards).
    """
    if LEGACY_KERAS:
        raise RuntimeError(
            f"The {pip_name} adapter needs Keras 3; this process runs keras_convzoo on tf_keras "
            "(TF_USE_LEGACY_KERAS=1). Run it without TF_USE_LEGACY_KERAS."
        )
    if sys.modules.get(module) is not None:
        return sys.modules[module]
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    os.environ["TF_USE_LEGACY_KERAS"] = "0"
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"This adapter needs {pip_name}: `pip install {pip_name}=={version}` "
            f"(or `pip install keras_convzoo[ecosystem]`). Import failed with: {error}"
        ) from error
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved


def check_model_kwargs(adapter, model_kwargs):
    """Refuses builder arguments an adapter sets itself."""
    refused = sorted(set(model_kwargs) & set(_REFUSED))
    if refused:
        raise TypeError(
            f"{adapter} builds the trunk itself (include_top=False, no pooling, its own input and "
            f"name); it does not take {refused}. Pass `input_shape`, `weights` and the family "
            "options (e.g. depths=..., drop_path_rate=...)."
        )


def build_trunk(model_name, input_shape, model_kwargs):
    """``(trunk, pyramid)``: the zoo trunk and ``{level: FeatureInfo}`` for P2..P5 present."""
    if not isinstance(model_name, str):
        raise TypeError(f"`name` must be a registry name (str). Received: name={model_name!r}")
    trunk, info = trunk_and_feature_info(
        model_name, input_shape=None if input_shape is None else tuple(input_shape), **model_kwargs
    )
    return trunk, pyramid_levels(info)


def pyramid_levels(info):
    """``{"Pn": FeatureInfo}``: for each level, the deepest stage of stride ``2**n``.

    Args:
        info: ``FeatureInfo`` tuple in network order.

    Returns:
        A dict over the levels of ``PYRAMID_LEVELS`` the model has (CCNN,
        which keeps the resolution, has none).
    """
    levels = {}
    for level in PYRAMID_LEVELS:
        stride = 2 ** int(level[1:])
        matching = [i for i in info if i.stride == stride]
        if matching:
            levels[level] = matching[-1]
    return levels


def config_kwargs(model_kwargs):
    """The model arguments kept in a backbone's config (a weights path is not: saved weights are)."""
    return {k: v for k, v in model_kwargs.items() if k != "weights"}
