"""Loading weights into zoo models: our files, and state dicts of reference implementations.

This package sits below the applications package (the registry, the
builder, the families) and imports nothing of it. The model-level functions
that look a variant up in the registry or build one, ``port_timm`` and
``convert_timm_weights``, and ``port_ccnn`` (CCNN's key map is the family's), live there
(``kcz.applications.port_timm``); their
old paths here answer until 0.2, see ``weights._moved``.
"""

from keras_convzoo.weights.keras_files import port_keras_file
from keras_convzoo.weights.formats import KeyMap, WeightFormat
from keras_convzoo.weights.loading import (
    WeightsMismatchError,
    check_weights_path,
    load,
    read_metadata,
    save,
)
from keras_convzoo.weights.pretrained import (
    CorruptDownloadError,
    DownloadError,
    PretrainedEntry,
    fetch,
    list_pretrained,
    resolve,
)
from keras_convzoo.weights.state_dict import read_state_dict
from keras_convzoo.weights.timm import port_state_dict
from keras_convzoo.weights._moved import moved_attribute as _moved_attribute

__all__ = [
    "CorruptDownloadError",
    "DownloadError",
    "KeyMap",
    "PretrainedEntry",
    "WeightFormat",
    "WeightsMismatchError",
    "check_weights_path",
    "fetch",
    "list_pretrained",
    "load",
    "port_keras_file",
    "port_state_dict",
    "read_metadata",
    "read_state_dict",
    "resolve",
    "save",
]


def __getattr__(name):
    """``port_timm``, ``convert_timm_weights`` and ``port_ccnn`` of the previous release (see ``weights._moved``)."""
    return _moved_attribute(__name__, name)
