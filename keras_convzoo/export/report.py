"""The export report, the verification tolerances and the checks the exporters share.

Every exporter of ``keras_convzoo.export`` writes a file beside its target,
runs it with the target runtime, compares its outputs with the Keras model's
and only then renames it onto the target (``publish``). The inputs are the
user's ``verification_data``, else the int8 ``representative_data``, else
synthetic images in the model's own input range (``export.inputs``). With
``verify=True`` an out-of-tolerance file raises ``VerificationError`` (a
``ValueError``) naming the measured numbers. The tolerances:

| format / quantization | checks                                           | constants                                |
|-----------------------|--------------------------------------------------|------------------------------------------|
| TFLite fp32 (`None`)  | ``relative_diff <= 1e-4``                        | ``FP32_MAX_RELATIVE_DIFF``               |
| TFLite ``"float16"``  | ``snr_db >= 30``, top-1 agreement >= 0.97        | ``FLOAT16_MIN_SNR_DB``                   |
| TFLite ``"dynamic"``  | ``snr_db >= 15``, top-1 agreement >= 0.9         | ``DYNAMIC_MIN_SNR_DB``                   |
| TFLite ``"int8"``     | ``snr_db >= 5``, top-1 agreement >= 0.7          | ``INT8_MIN_SNR_DB``                      |
| TFLite int8 of a QAT model | ``snr_db >= 20``                            | ``QAT_INT8_MIN_SNR_DB``                  |
| ONNX, SavedModel      | ``relative_diff <= 1e-4``                        | ``ONNX_MAX_RELATIVE_DIFF``               |

Top-1 agreement (``MIN_TOP1_AGREEMENT``) is checked only on the user's own
inputs (at least ``MIN_AGREEMENT_SAMPLES``) and a single ``(batch, classes)``
output: on synthetic images a trained classifier's scores are near ties.

``relative_diff`` is the largest absolute output difference divided by the
largest absolute Keras output, so it does not depend on the scale of the
logits; fp32 files and ONNX differ from Keras only by floating-point
reordering (about 1e-7). ``snr_db`` is ``10 log10(signal power / error
power)`` of the outputs. The quantized bounds come from trained models, not
from random weights: ``tools/export_accuracy.py`` trains each family's tiny
twin on the digits (0-255 pixels, scaling inside), exports it in every mode
and measures each file on the held-out images; its table is in docs/benchmarks/export-accuracy.md
("Exported files of trained models"). Bounds set on random weights and
unit-normal noise rejected good files of trained models and passed wrong ones.
For int8 files top-1 agreement on the user's inputs is the main check: the
SNR of a classifier's probabilities swings with its near ties (the
phone example's int8 file, as accurate as Keras, measures under 10 dB), so
the int8 SNR bound only catches broken files (ConvNeXt's full-integer
LayerNorm: below 0 dB).

A quantization-aware-trained model (``quantization.quantize_aware``) already
emulates the int8 weights and activations, so its full-integer file is held
to 20 dB against the QAT model: the file differs from the float emulation by
integer rounding in the kernels, and the int8 kernels of two runtimes
disagree by about as much on the same file.

Non-finite runtime outputs (NaN or inf where Keras is finite) always fail.
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np


#: Largest ``relative_diff`` accepted for a float32 TFLite file.
FP32_MAX_RELATIVE_DIFF = 1e-4
#: Smallest output SNR (dB) accepted for a float16-weight TFLite file.
FLOAT16_MIN_SNR_DB = 30.0
#: Smallest output SNR (dB) accepted for a dynamic-range quantized TFLite file.
DYNAMIC_MIN_SNR_DB = 15.0
#: Smallest output signal-to-noise ratio (dB) accepted for a full-integer file.
INT8_MIN_SNR_DB = 5.0
#: Smallest top-1 agreement with Keras on the user's inputs, per quantization.
MIN_TOP1_AGREEMENT = {"float16": 0.97, "dynamic": 0.9, "int8": 0.7}
#: Fewest real samples on which top-1 agreement is checked.
MIN_AGREEMENT_SAMPLES = 20
#: Smallest output SNR (dB) of a QAT model's full-integer file against the QAT model.
QAT_INT8_MIN_SNR_DB = 20.0
#: Largest ``relative_diff`` accepted for an ONNX file.
ONNX_MAX_RELATIVE_DIFF = 1e-4

#: The ``quantization`` values ``to_tflite`` accepts.
QUANTIZATIONS = (None, "float16", "dynamic", "int8")

_TINY = 1e-12


class ExportError(RuntimeError):
    """A converter (TFLite or tf2onnx) could not convert the model.

    The message names the converter and carries the converter's first error
    line (for example ``'tf.PyFunc' op is neither a custom op nor a flex op``).
    """


class VerificationError(ValueError):
    """The exported file's outputs differ from the Keras model's beyond tolerance."""


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the file reproduces the Keras model.

    The difference fields are ``None`` when the export ran with
    ``verify=False``.

    Attributes:
        format: ``"tflite"``, ``"onnx"`` or ``"saved_model"``.
        path: the written file.
        quantization: ``None``, ``"float16"``, ``"dynamic"`` or ``"int8"``
            (always ``None`` for ONNX).
        file_size_bytes: size of the written file.
        max_abs_diff: largest absolute difference between the runtime's and
            the Keras model's outputs over all verification samples.
        mean_abs_diff: mean absolute difference.
        output_scale: largest absolute Keras output.
        relative_diff: ``max_abs_diff / max(output_scale, 1e-12)``.
        top1_agreement: fraction of samples whose argmax agrees with Keras,
            for a single 2D ``(batch, classes)`` output; ``None`` otherwise.
        snr_db: ``10 * log10(signal power / error power)`` of the outputs
            (``inf`` for identical outputs). Computed for every file, checked
            only for int8 files.
        input_shape: the input shape stored in the file, batch included
            (``None`` for a dynamic dimension).
        num_samples: number of inputs the file was verified on (0 without
            verification).
        tolerance: the check ``verify=True`` applied, e.g.
            ``"relative_diff <= 0.0001"``.
        quantization_aware: the model was quantization-aware trained (its
            graph has fake-quant ops), which sets the int8 tolerance to
            ``QAT_INT8_MIN_SNR_DB``.
        float_ops: for int8 TFLite files, the ops that compute in floating
            point besides the input ``QUANTIZE`` and output ``DEQUANTIZE``
            (``()``: a full-integer file); ``None`` for other files.
        convert_seconds: wall time of the conversion (tracing, converter,
            writing), without verification.
        verification_inputs: what the file was checked on, e.g. ``"8
            synthetic images, 0-255 pixels (the model scales them:
            rescale)"`` or ``"200 samples of verification_data"``.
        real_inputs: the check ran on the user's data (``verification_data``
            or ``representative_data``); top-1 agreement is then checked.
        notes: what the exporter did on its own, e.g. fusing a model whose
            continuous kernels do not convert (``deploy.fuse``).

    Example:
    >>> report = kcz.export.to_tflite(model, "/tmp/model.tflite")
    >>> print(report)
    >>> report.relative_diff < 1e-4
    True
    """

    format: str
    path: str
    quantization: Optional[str]
    file_size_bytes: int
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    output_scale: Optional[float] = None
    relative_diff: Optional[float] = None
    top1_agreement: Optional[float] = None
    snr_db: Optional[float] = None
    input_shape: Optional[Tuple[Optional[int], ...]] = None
    num_samples: int = 0
    tolerance: str = ""
    quantization_aware: bool = False
    float_ops: Optional[Tuple[str, ...]] = None
    convert_seconds: Optional[float] = None
    verification_inputs: Optional[str] = None
    real_inputs: bool = False
    notes: Tuple[str, ...] = ()

    def to_dict(self):
        """Returns the report as a plain ``dict`` (for JSON logs)."""
        return dataclasses.asdict(self)

    def __str__(self):
        rows = []
        for field in dataclasses.fields(self):
            rows.append((field.name, _format_value(field.name, getattr(self, field.name))))
        width = max(len(name) for name, _ in rows)
        lines = [f"ExportReport ({self.format})"]
        lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
        return "\n".join(lines)


def _format_value(name, value):
    if value is None:
        return "-"
    if name == "file_size_bytes":
        return f"{value:,} bytes ({value / 1024:.1f} KiB)"
    if name == "snr_db":
        return f"{value:.2f} dB" if math.isfinite(value) else f"{value} dB"
    if name == "top1_agreement":
        return f"{value:.3f}"
    if name == "convert_seconds":
        return f"{value:.2f} s"
    if name == "float_ops":
        return ", ".join(value) if value else "none (full integer)"
    if isinstance(value, float):
        return f"{value:.3e}"
    return str(value)


# --------------------------------------------------------------------------
# Comparison and tolerances.
# --------------------------------------------------------------------------


def compare_outputs(reference, candidate):
    """Measures how far runtime outputs are from the Keras model's outputs.

    Args:
        reference: a list of arrays (the Keras model's flattened outputs), or
            one array.
        candidate: the runtime's outputs, same structure and shapes.

    Returns:
        A dict with ``max_abs_diff``, ``mean_abs_diff``, ``output_scale``,
        ``relative_diff``, ``top1_agreement`` and ``snr_db`` (floats;
        ``top1_agreement`` is ``None`` unless there is a single 2D output with
        more than one class). A NaN or inf in ``candidate`` where
        ``reference`` is finite counts as an infinite difference.

    Raises:
        ValueError: when the number of outputs or their shapes differ.

    Example:
    >>> compare_outputs([np.ones((2, 3))], [np.ones((2, 3)) * 1.1])["max_abs_diff"]
    0.1
    """
    reference = _as_list(reference)
    candidate = _as_list(candidate)
    if len(reference) != len(candidate):
        raise ValueError(
            f"The exported file has {len(candidate)} output(s), the Keras model "
            f"{len(reference)}."
        )
    errors, refs = [], []
    for i, (ref, out) in enumerate(zip(reference, candidate)):
        ref = np.asarray(ref, dtype=np.float64)
        out = np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            raise ValueError(
                f"Output {i} of the exported file has shape {out.shape}, the Keras "
                f"model's has shape {ref.shape}."
            )
        err = np.abs(out - ref)
        err[~np.isfinite(err)] = np.inf
        errors.append(err.ravel())
        refs.append(ref.ravel())
    err = np.concatenate(errors) if errors else np.zeros((0,))
    ref = np.concatenate(refs) if refs else np.zeros((0,))
    max_abs = float(err.max()) if err.size else 0.0
    mean_abs = float(err.mean()) if err.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    signal = float(np.sum(ref**2))
    noise = float(np.sum(err**2)) if np.all(np.isfinite(err)) else math.inf
    if noise == 0.0:
        snr = math.inf
    elif math.isinf(noise) or signal == 0.0:
        snr = -math.inf
    else:
        snr = 10.0 * math.log10(signal / noise)
    top1 = None
    if len(reference) == 1:
        ref0 = np.asarray(reference[0])
        out0 = np.asarray(candidate[0])
        if ref0.ndim == 2 and ref0.shape[-1] > 1 and ref0.shape[0] > 0:
            top1 = float(np.mean(np.argmax(ref0, axis=-1) == np.argmax(out0, axis=-1)))
    return {
        "max_abs_diff": max_abs,
        "mean_abs_diff": mean_abs,
        "output_scale": scale,
        "relative_diff": max_abs / max(scale, _TINY),
        "top1_agreement": top1,
        "snr_db": snr,
    }


@dataclasses.dataclass(frozen=True)
class Check:
    """One condition of an export's tolerance, e.g. ``snr_db >= 30``.

    Attributes:
        metric: an ``ExportReport`` field: ``"relative_diff"`` (an upper
            bound), ``"snr_db"`` or ``"top1_agreement"`` (lower bounds).
        bound: the limit.
        real_inputs_only: applied only when the file was verified on the
            user's data (``verification_data`` or ``representative_data``)
            of at least ``MIN_AGREEMENT_SAMPLES`` samples: top-1 agreement on
            synthetic images says nothing (a trained classifier's scores on
            them are near ties).
    """

    metric: str
    bound: float
    real_inputs_only: bool = False

    @property
    def upper(self):
        """True for an upper bound (``relative_diff``)."""
        return self.metric == "relative_diff"

    def applies(self, report):
        """Whether the check applies to a verified report."""
        if not self.real_inputs_only:
            return True
        return (
            report.real_inputs
            and getattr(report, self.metric) is not None
            and report.num_samples >= MIN_AGREEMENT_SAMPLES
        )

    def passes(self, value):
        """Whether a measured value meets the bound (NaN never does)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.upper:
            return math.isfinite(value) and value <= self.bound
        return value >= self.bound

    def __str__(self):
        text = f"{self.metric} {'<=' if self.upper else '>='} {self.bound:g}"
        return text + (" (real inputs)" if self.real_inputs_only else "")


def tolerance_for(fmt, quantization=None, quantization_aware=False):
    """The checks ``verify=True`` applies to a format and quantization.

    Args:
        fmt: ``"tflite"``, ``"onnx"`` or ``"saved_model"``.
        quantization: one of ``QUANTIZATIONS`` (TFLite only).
        quantization_aware: the model is quantization-aware trained (int8
            files are then held to ``QAT_INT8_MIN_SNR_DB``).

    Returns:
        A tuple of ``Check``: all must pass.

    Raises:
        ValueError: for an unknown format or quantization.

    Example:
    >>> [str(c) for c in tolerance_for("tflite", "int8")]
    ['snr_db >= 5', 'top1_agreement >= 0.7 (real inputs)']
    """
    if fmt == "onnx":
        return (Check("relative_diff", ONNX_MAX_RELATIVE_DIFF),)
    if fmt == "saved_model":
        return (Check("relative_diff", FP32_MAX_RELATIVE_DIFF),)
    if fmt != "tflite":
        raise ValueError(f"Unknown export format: {fmt!r}. Allowed: 'tflite', 'onnx', 'saved_model'")
    if quantization == "int8" and quantization_aware:
        return (Check("snr_db", QAT_INT8_MIN_SNR_DB),)
    if quantization is None:
        return (Check("relative_diff", FP32_MAX_RELATIVE_DIFF),)
    bounds = {
        "float16": FLOAT16_MIN_SNR_DB,
        "dynamic": DYNAMIC_MIN_SNR_DB,
        "int8": INT8_MIN_SNR_DB,
    }
    if quantization not in bounds:
        raise ValueError(f"Unknown quantization: {quantization!r}. Allowed values: {list(QUANTIZATIONS)}")
    return (
        Check("snr_db", bounds[quantization]),
        Check("top1_agreement", MIN_TOP1_AGREEMENT[quantization], real_inputs_only=True),
    )


def describe_tolerance(fmt, quantization=None, quantization_aware=False):
    """``tolerance_for`` as text, e.g. ``"relative_diff <= 0.0001"``."""
    return " and ".join(str(check) for check in tolerance_for(fmt, quantization, quantization_aware))


def check_report(report):
    """Raises when a verified report is outside its format's tolerance.

    Args:
        report: an ``ExportReport`` with measured differences.

    Returns:
        The report, unchanged.

    Raises:
        VerificationError: naming the measured numbers, the tolerance, the
            inputs and the file, when a check fails (NaN outputs always fail).

    Example:
    >>> check_report(report)  # raises on a wrong file
    """
    if report.num_samples == 0 or report.max_abs_diff is None:
        return report
    checks = tolerance_for(report.format, report.quantization, report.quantization_aware)
    failed = [c for c in checks if c.applies(report) and not c.passes(getattr(report, c.metric))]
    if not failed:
        return report
    what = f"tflite ({report.quantization or 'fp32'})" if report.format == "tflite" else report.format
    top1 = "-" if report.top1_agreement is None else f"{report.top1_agreement:.3f}"
    n = _number
    failures = ", ".join(f"{c.metric}={n(getattr(report, c.metric))} fails {c}" for c in failed)
    raise VerificationError(
        f"The exported {what} file '{report.path}' does not reproduce the Keras model: {failures} "
        f"(max_abs_diff={n(report.max_abs_diff)}, mean_abs_diff={n(report.mean_abs_diff)}, "
        f"output_scale={n(report.output_scale)}, relative_diff={n(report.relative_diff)}, "
        f"snr_db={n(report.snr_db)}, top1_agreement={top1}, on {report.verification_inputs or report.num_samples}); "
        "verify=False skips this check."
    )


def applied_tolerance(report):
    """The checks that apply to a measured report, as text (skipped ones said so).

    Example:
    >>> applied_tolerance(report)
    'snr_db >= 30 (top1_agreement not checked: 8 synthetic inputs)'
    """
    checks = tolerance_for(report.format, report.quantization, report.quantization_aware)
    applied = [str(c) for c in checks if c.applies(report)]
    skipped = [c for c in checks if not c.applies(report)]
    text = " and ".join(applied)
    if skipped:
        why = (
            f"{report.num_samples} real inputs, fewer than {MIN_AGREEMENT_SAMPLES}"
            if report.real_inputs
            else f"{report.num_samples} synthetic inputs; pass verification_data"
        )
        text += f" ({', '.join(c.metric for c in skipped)} not checked: {why})"
    return text


def _number(value):
    return "-" if value is None else f"{value:.4g}"


# --------------------------------------------------------------------------
# Plumbing shared by the exporters.
# --------------------------------------------------------------------------


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]
