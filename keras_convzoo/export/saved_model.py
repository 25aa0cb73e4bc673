"""Export to a TensorFlow SavedModel (TF Serving, TF.js and TFLite converters), verified after reloading.

The model is traced in a ``tf.function`` with one input (named after the
Keras input, dynamic batch unless ``dynamic_batch=False``, ``None`` spatial
dimensions kept unless ``input_shape`` fixes them) and saved with
``tf.saved_model.save`` under the ``serving_default`` signature, whose outputs
are ``output_0``, ``output_1``, ... (the model's flattened outputs). The folder
is then reloaded with ``tf.saved_model.load`` and its signature run on the
verification inputs (``keras_convzoo.export.inputs``) against the Keras model. The same code serves Keras 3 and
tf_keras models. The graph keeps the model's own lowerings (it runs on
TensorFlow, for which they were chosen).
"""

import dataclasses
import os
import re
import time

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.export.converter import converter_logs, first_error_line
from keras_convzoo.export.report import ExportError, describe_tolerance
from keras_convzoo.export.verification import publish
from keras_convzoo.input_shapes import merge_input_shape, model_input
from keras_convzoo.export.inputs import check_num_samples, verification_inputs

SIGNATURE_KEY = "serving_default"


def _check_folder(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"`path` must be a str or os.PathLike folder, e.g. 'model_savedmodel'. Received: path={path!r}"
        ) from None
    if not path:
        raise ValueError(f"`path` must name a folder, e.g. 'model_savedmodel'. Received: path={path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a folder (a SavedModel is a directory); a file exists there. "
            f"Received: path={path!r}"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(
            f"The folder of `path` does not exist: {parent!r}. Create it first. Received: path={path!r}"
        )
    if not os.access(parent, os.W_OK):
        raise ValueError(f"The folder of `path` is not writable: {parent!r}. Received: path={path!r}")
    return path


def _output_index(key):
    match = re.fullmatch(r"output_(\d+)", key)
    return int(match.group(1)) if match else key


def run_saved_model(path, x):
    """Runs the ``serving_default`` signature of a single-input SavedModel.

    Args:
        path: the SavedModel folder.
        x: input array, batch first.

    Returns:
        A list of output arrays, ordered ``output_0``, ``output_1``, ...
        (the order ``to_saved_model`` writes).

    Raises:
        ValueError: when the folder has no ``serving_default`` signature or
            the signature does not have exactly one input.

    Example:
    >>> (probs,) = run_saved_model("m_savedmodel", images)
    """
    loaded = tf.saved_model.load(os.fspath(path))
    if SIGNATURE_KEY not in loaded.signatures:
        raise ValueError(
            f"'{path}' has no '{SIGNATURE_KEY}' signature; signatures: {list(loaded.signatures)}"
        )
    function = loaded.signatures[SIGNATURE_KEY]
    _, kwargs = function.structured_input_signature
    if len(kwargs) != 1:
        raise ValueError(
            f"run_saved_model supports single-input signatures; '{path}' has {len(kwargs)} inputs."
        )
    (input_name, spec), = kwargs.items()
    outputs = function(**{input_name: tf.convert_to_tensor(np.asarray(x), spec.dtype)})
    return [np.asarray(outputs[k]) for k in sorted(outputs, key=_output_index)]


def to_saved_model(
    model,
    path,
    input_shape=None,
    dynamic_batch=True,
    verify=True,
    num_samples=None,
    seed=0,
    keep_failed=False,
    verification_data=None,
    verbose=False,
):
    """Saves a Keras model as a TensorFlow SavedModel and checks it after reloading.

    Args:
        model: a built single-input Keras 3 or tf_keras model.
        path: destination folder; its parent must exist (an existing
            SavedModel folder is overwritten).
        input_shape: shape without batch, e.g. ``(224, 224, 3)``, fixing the
            model's ``None`` dimensions in the signature.
        dynamic_batch: keep the batch dimension dynamic (batch 1 otherwise).
        verify: reload the folder, run it and raise when it differs from
            Keras by more than ``relative_diff <= 1e-4``.
        num_samples: number of verification inputs (default: every sample
            of ``verification_data``, else ``DEFAULT_NUM_SAMPLES``).
        seed: seed of the synthetic verification inputs.
        verification_data: inputs like the real ones to check the file on
            (an array of samples, an iterable of arrays or batches, a
            ``tf.data.Dataset``, or a callable returning one); default:
            synthetic images in the model's own input range
            (``keras_convzoo.export.inputs``).
        verbose: show TensorFlow's own log lines while saving (hidden by default).
        keep_failed: when verification fails, keep the rejected folder as
            ``<path>.rejected`` (default: delete it). The folder is written
            beside ``path`` and swapped in only once verified.

    Returns:
        An ``ExportReport`` with ``format="saved_model"`` (``file_size_bytes``
        is the folder's total size).

    Raises:
        ValueError: for a ``path`` whose parent folder does not exist or that
            is a file, a bad ``input_shape``, or a multi-input model.
        ExportError: (a ``RuntimeError``) when tracing or saving fails.
        VerificationError: (a ``ValueError``) when ``verify=True`` and the
            reloaded model is out of tolerance.

    Example:
    >>> report = kcz.export.to_saved_model(model, "resnext50_savedmodel")
    >>> reloaded = tf.saved_model.load("resnext50_savedmodel")
    >>> probs = reloaded.signatures["serving_default"](input=images)["output_0"]
    """
    if not isinstance(keep_failed, bool):
        raise TypeError(f"`keep_failed` must be a bool. Received: keep_failed={keep_failed!r}")
    path = _check_folder(path)
    if verify and num_samples is not None:
        num_samples = check_num_samples(num_samples)
    model_shape, dtype, name = model_input(model)
    shape = merge_input_shape(model_shape, input_shape)
    signature_shape = (None if dynamic_batch else 1,) + shape
    spec = tf.TensorSpec(signature_shape, dtype, name=name)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        outputs = tf.nest.flatten(model(x, training=False))
        return {f"output_{i}": y for i, y in enumerate(outputs)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    start = time.perf_counter()
    try:
        concrete = serve.get_concrete_function()
    except Exception as e:
        raise ExportError(
            f"Tracing model '{getattr(model, 'name', '?')}' in a tf.function for export "
            f"failed: {type(e).__name__}: {first_error_line(e)}"
        ) from e
    save_seconds = []

    def write(target):
        begin = time.perf_counter()
        try:
            with converter_logs(verbose):
                tf.saved_model.save(module, target, signatures={SIGNATURE_KEY: concrete})
            save_seconds.append(time.perf_counter() - begin)
        except Exception as e:
            raise ExportError(
                f"tf.saved_model.save of model '{getattr(model, 'name', '?')}' failed: "
                f"{type(e).__name__}: {first_error_line(e)}"
            ) from e

    seconds = time.perf_counter() - start
    fields = dict(
        format="saved_model",
        path=path,
        quantization=None,
        file_size_bytes=None,
        input_shape=signature_shape,
        tolerance=describe_tolerance("saved_model"),
        convert_seconds=seconds,
    )
    x = None
    if verify:
        x, fields["verification_inputs"], fields["real_inputs"] = verification_inputs(
            model, shape, dtype.as_numpy_dtype, verification_data, None, num_samples, seed
        )
    report = publish(fields, model, x, run_saved_model, verify, write, keep_failed)
    return dataclasses.replace(report, convert_seconds=report.convert_seconds + sum(save_seconds))
