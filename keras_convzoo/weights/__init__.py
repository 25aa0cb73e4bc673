"""Loading weights into zoo models: our files, and state dicts of reference implementations."""

from keras_convzoo.weights.ccnn import port_ccnn
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
from keras_convzoo.weights.timm import convert_timm_weights, port_state_dict, port_timm

__all__ = [
    "CorruptDownloadError",
    "DownloadError",
    "KeyMap",
    "PretrainedEntry",
    "WeightFormat",
    "WeightsMismatchError",
    "check_weights_path",
    "convert_timm_weights",
    "fetch",
    "list_pretrained",
    "load",
    "port_ccnn",
    "port_keras_file",
    "port_state_dict",
    "port_timm",
    "read_metadata",
    "read_state_dict",
    "resolve",
    "save",
]
