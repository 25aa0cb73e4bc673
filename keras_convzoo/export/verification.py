"""Publishing an export: write beside the target, run the file, compare with Keras, then rename.

``publish`` is the one path of every exporter (``to_tflite``, ``to_onnx``,
``to_saved_model``): a failed conversion, a failed check, an interrupt or a
full disk never leaves a partial file at the target nor replaces a good one
there. The tolerances and the report are in ``export.report``, the inputs in
``export.inputs``.
"""

import dataclasses
import os
import shutil

import numpy as np

from keras_convzoo.backend import tf
from keras_convzoo.export.report import ExportReport, VerificationError, applied_tolerance, check_report, compare_outputs


#: Extensions of model files: an export to a path with another format's extension is refused (a
#: ``.tflite`` file named ``m.onnx`` misleads every tool that opens it, and ``m.keras`` would be overwritten).
MODEL_FILE_SUFFIXES = (".tflite", ".onnx", ".keras", ".h5", ".pb", ".pth", ".pt", ".safetensors")


def check_output_path(path, suffix):
    """Validates the destination of an export before any conversion work.

    Args:
        path: str or ``os.PathLike``.
        suffix: the format's extension (``".tflite"``, ``".onnx"``): a path
            may have it or any extension but another model format's
            (``MODEL_FILE_SUFFIXES``).

    Returns:
        The path as ``str``.

    Raises:
        ValueError: when the parent folder does not exist, ``path`` is a
            folder, or it ends in another model format's extension.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"`path` must be a str or os.PathLike, e.g. 'model{suffix}'. Received: path={path!r}"
        ) from None
    if not path or os.path.isdir(path):
        raise ValueError(f"`path` must name a file, e.g. 'model{suffix}'. Received: path={path!r}")
    extension = os.path.splitext(path)[1].lower()
    if extension != suffix and extension in MODEL_FILE_SUFFIXES:
        raise ValueError(
            f"`path` ends in {extension!r}, another model format's extension, but this writes a {suffix} file: "
            f"name it e.g. {os.path.splitext(os.path.basename(path))[0] + suffix!r}. Received: path={path!r}"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(
            f"The folder of `path` does not exist: {parent!r}. Create it first. "
            f"Received: path={path!r}"
        )
    if not os.access(parent, os.W_OK):
        raise ValueError(f"The folder of `path` is not writable: {parent!r}. Received: path={path!r}")
    return path


#: More batches than this run through one traced function (``tf.function``, traced once, about a second) rather than
#: eagerly (Python per layer: 0.1-0.2 s a sample even for a small model; 7 ms traced, docs/benchmarks/export-memory.md).
EAGER_MAX_BATCHES = 8


def keras_outputs(model, batches):
    """Runs the Keras model (inference mode) on each batch.

    Up to ``EAGER_MAX_BATCHES`` batches run eagerly; more run through one
    ``tf.function`` of the model (the same computation, traced once).

    Args:
        model: the Keras model.
        batches: a list of input arrays.

    Returns:
        The model's flattened outputs, each concatenated over the batches.
    """
    call = lambda x: model(x, training=False)  # noqa: E731
    if len(batches) > EAGER_MAX_BATCHES:
        call = tf.function(call, reduce_retracing=True)
    per_batch = []
    for x in batches:
        y = call(tf.convert_to_tensor(x))
        per_batch.append([np.asarray(t) for t in tf.nest.flatten(y)])
    return [np.concatenate(parts, axis=0) for parts in zip(*per_batch)]


def file_size(path):
    """Size in bytes of a written file, or of all files under a written folder."""
    if os.path.isdir(path):
        return int(
            sum(
                os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(path)
                for name in names
            )
        )
    return int(os.path.getsize(path))


#: Batch size of the Keras side of a verification: one sample at a time, as a TFLite file runs. A Keras 3
#: functional model keeps every intermediate tensor of a call until the call returns, and TensorFlow's CPU
#: allocator keeps that memory afterwards: 8 RepLKNet-31B images at 224x224 in one call kept 1.9 GiB, 4 images
#: 0.8 GiB, one image at a time almost nothing beyond what a built model holds (docs/benchmarks/export-memory.md).
_KERAS_BATCH = 1


def finish_report(fields, model, x, run_file, verify=True):
    """Builds the ``ExportReport`` of a written file, verified against Keras when asked.

    Args:
        fields: the report fields known without running the file (format,
            path, quantization, file size, input shape, tolerance, inputs).
        model: the Keras model.
        x: the inputs the file is compared on, batch first (what
            ``run_file`` receives; Keras runs them one sample at a time).
        run_file: ``run_file(path, x)`` running the written file.
        verify: compare and raise ``VerificationError`` when out of tolerance.

    Returns:
        The report (differences None when ``verify=False``).
    """
    if not verify:
        return ExportReport(**dict(fields, tolerance="not verified (verify=False)"))
    reference = keras_outputs(model, [x[i : i + _KERAS_BATCH] for i in range(0, len(x), _KERAS_BATCH)])
    candidate = run_file(fields["path"], x)
    report = ExportReport(**fields, num_samples=len(x), **compare_outputs(reference, candidate))
    return check_report(dataclasses.replace(report, tolerance=applied_tolerance(report)))


def _sibling(path, tag):
    """``dir/.name.<tag>.ext``: a hidden path beside ``path`` (same file system, so a rename is atomic)."""
    directory, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(directory, f".{stem}.{tag}{ext}")


def rejected_path(path):
    """Where ``keep_failed=True`` keeps a file that failed verification: ``name.rejected.ext`` beside ``path``."""
    stem, ext = os.path.splitext(os.fspath(path))
    return f"{stem}.rejected{ext}"


def _remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def publish(fields, model, x, run_file, verify, write, keep_failed=False):
    """Writes an export beside its target, verifies it there, and only then renames it onto the target.

    A failed conversion, a failed check, an interrupt or a full disk never
    leaves a partial file at ``fields["path"]`` nor replaces a good one
    there. A file that fails the check is deleted, or kept as
    ``rejected_path(path)`` with ``keep_failed=True``.

    Args:
        fields: report fields (``path`` is the target).
        model: the Keras model.
        x: verification inputs, batch first (see ``finish_report``).
        run_file: ``run_file(path, x)`` running a written file.
        verify: compare with Keras before publishing.
        write: ``write(temporary_path)`` writes the export (a file or a folder).
        keep_failed: keep a rejected file under ``rejected_path(path)``.

    Returns:
        The ``ExportReport`` of the published file.

    Raises:
        VerificationError: the written file differs from Keras (the message
            says what happened to it); errors of ``write`` pass through.
    """
    path = fields["path"]
    temporary = _sibling(path, f"{os.getpid()}.part")
    try:
        write(temporary)
        fields = dict(fields, path=temporary, file_size_bytes=file_size(temporary))
        try:
            report = finish_report(fields, model, x, run_file, verify)
        except VerificationError as error:
            error = VerificationError(str(error).replace(repr(temporary), repr(path)).replace(temporary, path))
            if keep_failed:
                kept = rejected_path(path)
                _remove_path(kept)
                os.replace(temporary, kept)
                where = f"the rejected file is kept at {kept!r}"
            else:
                where = "the rejected file was deleted (keep_failed=True keeps it)"
            raise VerificationError(
                f"{error} Nothing was written at {path!r} (a file there is unchanged); {where}."
            ) from None
        if os.path.isdir(temporary) and os.path.isdir(path):  # a folder export replacing an older one
            old = _sibling(path, f"{os.getpid()}.old")
            os.replace(path, old)
            os.replace(temporary, path)
            _remove_path(old)
        else:
            os.replace(temporary, path)
        return dataclasses.replace(report, path=path)
    finally:
        _remove_path(temporary)
