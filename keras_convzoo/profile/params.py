"""Parameter counting with the trainable / non-trainable split."""

import numpy as np


def count_params(model):
    """Counts a model's parameters.

    PyTorch/timm report trainable parameters only (BN running statistics are
    buffers there); Keras' ``count_params()`` reports the total. Both are
    returned.

    Args:
        model: a built Keras model or layer.

    Returns:
        A dict with ``trainable``, ``non_trainable`` and ``total`` ints.

    Example:
    >>> count_params(keras_convzoo.ResNeXt50())["trainable"]
    25028904
    """
    if not hasattr(model, "trainable_weights"):
        raise TypeError(f"`model` must be a Keras model or layer. Received: {type(model).__name__}")
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}
