"""Loading keras.applications' weight files (``.h5``) into zoo models that reproduce their architecture."""

import numpy as np

from keras_convzoo.weights.loading import WeightsMismatchError, open_h5


def port_keras_file(model, path, weight_format, spec, classes=1000):
    """Loads a keras.applications ``.h5`` weights file into a zoo model (all or nothing).

    The family's ``weight_format.keras_reference(spec, classes)`` builds the
    keras.applications model the file belongs to; Keras reads the file into
    it, and its weights are copied into ``model`` in graph order (the family
    reproduces keras.applications layer for layer; ``keras_convert`` turns
    arrays into our layout). A model without top takes the leading weights
    and leaves the classifier (and ConvNeXt's head norm without pooling).
    Every shape is checked and every value must be finite before anything
    is assigned.

    Args:
        model: a zoo model of the file's variant, built with the format's config.
        path: the ``.h5`` file (keras.applications' own, with the top).
        weight_format: the family's ``WeightFormat`` for ``"keras"``.
        spec: the variant's ``ModelSpec``.
        classes: classifier width of the file.

    Returns:
        The model.

    Raises:
        WeightsMismatchError: (a ``ValueError``) naming the file and the
            first problem; the model is left unchanged.

    Example:
    >>> spec = keras_convzoo.get_spec("mobilenetv2_100")
    >>> port_keras_file(model, "mobilenet_v2_..._1.0_224.h5", spec.weight_formats["keras"], spec)  # doctest: +SKIP
    """
    def path_of(variable):
        return getattr(variable, "path", None) or variable.name

    with open_h5(path) as handle:  # a truncated or corrupt file: UnreadableFileError naming it
        handle.attrs.get("layer_names")
    reference = weight_format.keras_reference(spec, classes)
    try:
        reference.load_weights(path)
    except Exception as error:  # h5py/Keras errors of a truncated, corrupt or foreign file
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise WeightsMismatchError(
            f"The keras.applications weights file {path!r} cannot be read into keras.applications' "
            f"{reference.name} ({type(error).__name__}: {reason}). No weight was changed.",
            detail=reason,
        ) from None
    theirs = reference.weights
    ours = model.weights
    if len(ours) > len(theirs):
        raise WeightsMismatchError(
            f"Model '{model.name}' has {len(ours)} weights but keras.applications' {reference.name} has "
            f"{len(theirs)}: it is not built as keras.applications builds the variant. No weight was changed."
        )
    leftover = [path_of(v) for v in theirs[len(ours):]]
    if any(not ("predictions" in p or "head" in p or "layernorm" in p.lower()) for p in leftover):
        raise WeightsMismatchError(
            f"Model '{model.name}' leaves keras.applications weights other than its head unused: {leftover[:4]}. "
            "No weight was changed."
        )
    convert = weight_format.keras_convert or (lambda _, array: array)
    values = []
    for source, target in zip(theirs, ours):
        value = np.asarray(convert(path_of(source), np.array(source)), np.float32)
        if tuple(value.shape) != tuple(int(d) for d in target.shape):
            raise WeightsMismatchError(
                f"keras.applications' {path_of(source)} has shape {tuple(value.shape)} (our layout) but "
                f"{path_of(target)} of model '{model.name}' has {tuple(target.shape)}. No weight was changed.",
                layer=path_of(target).split("/")[0],
            )
        if not np.isfinite(value).all():
            raise WeightsMismatchError(
                f"The weights file {path!r} holds non-finite values (NaN or inf) in {path_of(source)}. "
                "No weight was changed.",
                layer=path_of(target).split("/")[0],
            )
        values.append(value)
    for target, value in zip(ours, values):
        target.assign(value)
    return model
