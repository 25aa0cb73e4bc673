"""ImageNet input preprocessing and prediction decoding, as keras.applications has them.

``preprocess_input(x, model_name)`` scales images the way the variant's
ImageNet weights expect, reading the mode from the registry
(``ModelSpec.preprocessing``, one source of truth); each mode computes exactly
what ``keras.applications.imagenet_utils.preprocess_input`` does for it.
``decode_predictions`` reads the 1000 class names shipped in
``keras_convzoo/data/imagenet_classes.json`` (made by
``tools/make_imagenet_classes.py``; keras.applications downloads its copy at
the first call, this package never downloads anything).
"""

import functools
import json
import os

import numpy as np

from keras_convzoo.applications._registry import PREPROCESSING_MODES, get_spec
from keras_convzoo.backend import LEGACY_KERAS, is_keras_tensor, keras, tf
from keras_convzoo.input_shapes import input_scaling, scales_pixels
from keras_convzoo.weights import pretrained

#: Per-channel (R, G, B) mean and std of "torch" mode, on inputs scaled to 0-1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Per-channel (B, G, R) mean of "caffe" mode, on 0-255 inputs.
CAFFE_MEAN = (103.939, 116.779, 123.68)
CLASS_INDEX_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "imagenet_classes.json")
NUM_CLASSES = 1000


def _pretrained_entry(model):
    """The pretrained table entry a ``"name"`` / ``"name.tag"`` string stands for, or None."""
    name, _, tag = model.partition(".")
    get_spec(name)  # unknown names raise here
    try:
        return pretrained.resolve(name, tag or pretrained.DEFAULT_TAG)
    except ValueError:
        if tag:
            raise
        return None


def _model_entry(model):
    """``(entry, name)`` for a model object: its weights' table entry (None without), its registry name.

    A model does not stand for its variant's default weights: it was built
    with the weights it has (``model.pretrained_cfg``, set by the builder, kept
    by ``deploy.fuse``), and without them (``weights=None``, or the attribute
    lost, e.g. in a reloaded ``.keras`` file) it is scaled as its family's
    (``ModelSpec.preprocessing``) unless it scales its 0-255 input itself:
    keras.applications' ConvNeXt weights come with the model's own
    ``Normalization``, timm's and a ``weights=None`` ConvNeXt take
    ImageNet-normalised input.
    """
    name = getattr(model, "convzoo_name", None) or getattr(model, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            "`model_name` must be a registry name, 'name.tag', or a model built by keras_convzoo. "
            f"Received: {model!r}"
        )
    get_spec(name.partition(".")[0])  # unknown names raise here
    return getattr(model, "pretrained_cfg", None), name


def _scales_own_input(model):
    """Whether ``model`` starts with layers that take 0-255 pixels (as ``export.input_range`` reads it)."""
    scale, offset, names = input_scaling(model)
    return bool(names) and scales_pixels(scale, offset)


def _resolve_mode(model_name, mode):
    """``(mode, mean, std)`` of the weights ``model_name`` stands for, or of ``mode``."""
    if mode is not None:
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"`mode` must be None or one of {PREPROCESSING_MODES}. Received: mode={mode!r}")
        return mode, IMAGENET_MEAN, IMAGENET_STD
    if isinstance(model_name, str):
        entry, name = _pretrained_entry(model_name), model_name
    else:
        entry, name = _model_entry(model_name)
        if entry is None and _scales_own_input(model_name):
            return "none", IMAGENET_MEAN, IMAGENET_STD
    if entry is not None:
        return entry.preprocessing, entry.mean or IMAGENET_MEAN, entry.std or IMAGENET_STD
    spec = get_spec(name.partition(".")[0])
    if spec.preprocessing is None:
        raise ValueError(
            f"'{name}' has no ImageNet weights, hence no preprocessing of its own; pass `mode=` "
            f"(one of {PREPROCESSING_MODES}) to choose one."
        )
    return spec.preprocessing, IMAGENET_MEAN, IMAGENET_STD


def _numpy_preprocess(x, mode, mean, std):
    x = np.array(x, copy=True)  # keras.applications scales float arrays in place; we never do
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(keras.backend.floatx())
    if mode == "none":
        return x
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
    else:
        x = np.ascontiguousarray(x[..., ::-1])  # RGB -> BGR
        mean, std = CAFFE_MEAN, None
    for channel in range(3):
        x[..., channel] -= mean[channel]
        if std is not None:
            x[..., channel] /= std[channel]
    return x


def _is_tensor(x):
    """A TensorFlow tensor or variable, or a symbolic Keras tensor (not an array or a list)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        return False
    return tf.is_tensor(x) or isinstance(x, tf.Variable) or is_keras_tensor(x)


def _tensor_preprocess(x, mode, mean, std):
    cast = tf.cast if LEGACY_KERAS or not is_keras_tensor(x) else keras.ops.cast
    dtype = tf.as_dtype(x.dtype)
    if not dtype.is_floating:
        x = cast(x, keras.backend.floatx())
        dtype = tf.as_dtype(keras.backend.floatx())
    numpy_dtype = dtype.as_numpy_dtype
    if mode == "none":
        return x
    if mode == "tf":
        return x / np.asarray(127.5, numpy_dtype) - np.asarray(1.0, numpy_dtype)
    if mode == "torch":
        x = x / np.asarray(255.0, numpy_dtype)
    else:
        x = x[..., ::-1]
        mean, std = CAFFE_MEAN, None
    x = x + (-np.asarray(mean, numpy_dtype))
    if std is not None:
        x = x / np.asarray(std, numpy_dtype)
    return x


def preprocess_input(x, model_name, mode=None):
    """Scales a batch of RGB images (0-255) as the model's pretrained weights expect.

    The scaling follows the weights: a model built with ``weights=`` carries
    its table entry (``model.pretrained_cfg``) and is scaled as that entry
    says; a model without one (``weights=None``) is scaled as its family's
    weights are (``ModelSpec.preprocessing``), or passed unchanged when its
    first layers scale 0-255 pixels themselves (a ConvNeXt built with
    ``include_preprocessing=True``); a registry name stands for its
    ``weights="imagenet"`` entry and ``"name.tag"`` for that tag's (see
    ``keras_convzoo.list_pretrained``):

    - ``"torch"`` (timm's weights): divide by 255, subtract the entry's
      mean, divide by its std (ImageNet's ``(0.485, 0.456, 0.406)`` /
      ``(0.229, 0.224, 0.225)`` for most; CLIP-trained tags differ).
    - ``"tf"`` (keras.applications' MobileNetV2): divide by 127.5 and
      subtract 1, to -1..1, as ``keras.applications.mobilenet_v2.preprocess_input``.
    - ``"none"`` (keras.applications' ConvNeXt, built with its input
      normalisation inside): the images pass unchanged, as
      ``keras.applications.convnext.preprocess_input``.
    - ``"caffe"`` (``mode=`` only): RGB to BGR, subtract ``(103.939, 116.779, 123.68)``.

    Variants without pretrained weights use their family's scaling
    (``ModelSpec.preprocessing``). The input is never modified in place
    (keras.applications scales float numpy arrays in place).

    Args:
        x: images, channels last, RGB, values 0-255: a numpy array (or
            anything ``np.asarray`` takes) or a tensor (TensorFlow or
            symbolic Keras). Integer inputs become ``keras.backend.floatx()``.
        model_name: a model built by keras_convzoo, a registry name
            (``"convnext_tiny"``) or ``"name.tag"`` (``"convnext_tiny.fb_in1k"``).
        mode: None (the weights' scaling) or one of ``"torch"`` (ImageNet
            mean/std), ``"tf"``, ``"caffe"`` to override it.

    Returns:
        The scaled images: a numpy array for array input, else a tensor.

    Raises:
        ValueError: unknown model name or mode, a model without ImageNet
            preprocessing and no ``mode``, or not 3 channels where the mode
            needs them.

    Example:
    >>> x = np.random.uniform(0, 255, (1, 224, 224, 3))
    >>> preprocess_input(x, "seresnet50").shape
    (1, 224, 224, 3)
    """
    mode, mean, std = _resolve_mode(model_name, mode)
    tensor = _is_tensor(x)
    if not tensor:
        x = np.asarray(x)
    channels = x.shape[-1] if len(x.shape) else None
    if mode in ("torch", "caffe") and channels != 3:
        raise ValueError(
            f"preprocess_input in '{mode}' mode needs RGB images with 3 channels, channels last. "
            f"Received: x.shape={tuple(x.shape)}"
        )
    return _tensor_preprocess(x, mode, mean, std) if tensor else _numpy_preprocess(x, mode, mean, std)


def preprocessing_layers(model_name, mode=None, name="preprocess"):
    """Standard Keras layers that compute ``preprocess_input(x, model_name, mode)`` inside a model.

    Put them in front of a backbone so a saved ``.keras`` file and its
    TFLite / ONNX exports take 0-255 RGB images (``Rescaling`` and
    ``Normalization`` convert everywhere). The scaling follows the weights,
    as ``preprocess_input`` does.

    Args:
        model_name: a model built by keras_convzoo, a registry name or ``"name.tag"``.
        mode: None (the weights' scaling) or ``"torch"`` / ``"tf"`` to choose one.
        name: prefix of the layer names.

    Returns:
        A list of layers to apply in order (empty when the model scales its
        0-255 input itself, e.g. keras.applications' ConvNeXt weights).

    Raises:
        ValueError: for ``"caffe"`` scaling (BGR) or a model without scaling
            of its own and no ``mode``.

    Example:
    >>> backbone = keras_convzoo.MobileNetV2(weights="imagenet", include_top=False, pooling="avg")
    >>> x = inputs = keras.Input((224, 224, 3))
    >>> for layer in preprocessing_layers(backbone):
    ...     x = layer(x)
    """
    mode, mean, std = _resolve_mode(model_name, mode)
    if mode == "none":
        return []
    if mode == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_rescale")]
    if mode == "torch":
        return [
            keras.layers.Rescaling(1.0 / 255.0, name=f"{name}_rescale"),
            keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std], name=f"{name}_normalize"),
        ]
    raise ValueError(f"`preprocessing_layers` has no layer form of the {mode!r} scaling (BGR); use preprocess_input.")


@functools.lru_cache(maxsize=1)
def imagenet_class_index():
    """Returns the 1000 ``(wnid, name)`` pairs of ImageNet-1k in class order (package data).

    Names follow keras.applications (the WordNet synset's first lemma,
    spaces replaced by underscores; e.g. 0 ``tench``, 2 ``great_white_shark``;
    134 and 517 are both ``crane``, 638 and 639 both ``maillot``).

    Returns:
        A tuple of 1000 ``(wnid, name)`` tuples.

    Example:
    >>> imagenet_class_index()[1]
    ('n01443537', 'goldfish')
    """
    with open(CLASS_INDEX_PATH, encoding="utf-8") as f:
        index = json.load(f)
    return tuple(tuple(index[str(i)]) for i in range(NUM_CLASSES))


def decode_predictions(preds, top=5):
    """Decodes ImageNet predictions into the ``top`` classes of each sample.

    Same output as ``keras.applications.imagenet_utils.decode_predictions``,
    with the class names read from the package instead of downloaded.

    Args:
        preds: batch of predictions, shape ``(samples, 1000)`` (numpy array
            or tensor; probabilities or logits).
        top: number of classes per sample, 1 to 1000.

    Returns:
        A list with, per sample, a list of ``(wnid, class_name, score)``
        tuples sorted by decreasing score.

    Raises:
        ValueError: if ``preds`` is not ``(samples, 1000)`` or ``top`` is
            not an int in 1..1000.

    Example:
    >>> preds = np.eye(1000)[[0]]
    >>> decode_predictions(preds, top=1)
    [[('n01440764', 'tench', 1.0)]]
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an int from 1 to {NUM_CLASSES}. Received: top={top!r}")
    if hasattr(preds, "numpy"):
        preds = preds.numpy()
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape (samples, 1000)). "
            f"Received array with shape: {preds.shape}"
        )
    classes = imagenet_class_index()
    results = []
    for pred in preds:
        top_indices = pred.argsort()[-top:][::-1]
        result = [classes[i] + (pred[i],) for i in top_indices]
        result.sort(key=lambda item: item[2], reverse=True)
        results.append(result)
    return results
