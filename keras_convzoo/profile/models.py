"""The model ``benchmark``, ``compare`` and ``benchmark_training`` time: built from a registry name, or checked.

``resolve_model`` turns a registry name or a built single-input
``keras.Model`` into ``(model, name, input shape without batch)`` at the
requested ``input_size`` (the rules of ``keras_convzoo.input_shapes``);
``prepare_model`` adds the ``keras_convzoo.deploy.fuse`` form and the MAC
count the rows carry.
"""

from keras_convzoo.backend import keras
from keras_convzoo.input_shapes import concrete_input_shape, model_input, spatial_sizes, spec_input_shape


def resolve_model(model_or_name, input_size, model_kwargs):
    """The model to time and its concrete input shape.

    Args:
        model_or_name: a registry name (built with ``weights=None`` at
            ``input_size``) or a built single-input ``keras.Model``.
        input_size: None (the family's default size, or the model's own
            sizes), an int or one int per spatial dim.
        model_kwargs: constructor arguments for a registry name; None or
            empty for a model.

    Returns:
        ``(model, name, input shape without batch)``.

    Raises:
        ValueError: a bad ``input_size``, one the model's input disagrees
            with, a model with open sizes and no ``input_size``, or
            ``model_kwargs`` with a model.
        TypeError: ``model_or_name`` is neither a str nor a ``keras.Model``.

    Example:
    >>> model, name, shape = resolve_model("mobilenetv2_100", 128, None)
    >>> shape
    (128, 128, 3)
    """
    if isinstance(model_or_name, str):
        from keras_convzoo.applications import create_model, get_spec

        shape = spec_input_shape(get_spec(model_or_name), input_size)
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("input_shape", shape)
        kwargs.setdefault("weights", None)
        return create_model(model_or_name, **kwargs), model_or_name, shape
    if model_kwargs:
        raise ValueError("`model_kwargs` is for a registry name; received a model.")
    if not isinstance(model_or_name, keras.Model):
        raise TypeError(
            f"`model_or_name` must be a registry name or a keras.Model. Received: {type(model_or_name).__name__}"
        )
    model_shape, _, _ = model_input(model_or_name, what="benchmark")
    sizes = spatial_sizes(input_size, len(model_shape) - 1)
    shape = concrete_input_shape(model_shape, sizes, name="input_size")
    return model_or_name, model_or_name.name, shape


def prepare_model(model_or_name, input_size, model_kwargs, fuse, count_macs):
    """``resolve_model``, then the fused form and the MAC count when asked.

    Args:
        model_or_name, input_size, model_kwargs: as in ``resolve_model``.
        fuse: time ``keras_convzoo.deploy.fuse(model)`` instead.
        count_macs: count the MACs at the input shape (None when the counter
            cannot walk the model).

    Returns:
        ``(model, name, input shape without batch, MACs or None)``.

    Raises:
        ValueError: as ``resolve_model``, and a non-bool ``fuse``.
    """
    if not isinstance(fuse, bool):
        raise ValueError(f"`fuse` must be a bool. Received: fuse={fuse!r}")
    model, name, shape = resolve_model(model_or_name, input_size, model_kwargs)
    if fuse:
        from keras_convzoo.deploy import fuse as fuse_model

        model = fuse_model(model)
    macs = None
    if count_macs:
        from keras_convzoo.profile.flops import count_flops

        try:
            macs = count_flops(model, shape).total
        except Exception:  # a model the counter cannot walk still gets timed
            macs = None
    return model, name, shape, macs
