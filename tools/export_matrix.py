"""Exports full-size registered models in every format and prints size, convert time, fidelity and TFLite latency.

For each model (its deploy form, ``deploy.fuse``; logits, i.e.
``classifier_activation=None``; random weights with random BatchNormalization
statistics so that no zero-initialised residual branch is silent) it writes:
TFLite fp32, float16, dynamic-range and full-integer int8 (calibrated on
``--calibration-samples`` unit-normal inputs) and ONNX, each verified by the
exporter against Keras (it raises when out of tolerance), then times the fp32
and int8 TFLite files with the LiteRT interpreter (``ai_edge_litert``, XNNPACK
delegate, ``--threads`` threads, batch 1, median of ``--repeats`` runs).

Random weights: no pretrained weights are needed (none are downloaded); the
int8 SNR of a trained model on real images is typically higher. The softmax
is left out because int8 probabilities of a random 1000-class head (about
1e-3 each) fall under the int8 step of 1/256.

Usage:
    python tools/export_matrix.py                                   # every registered model
    python tools/export_matrix.py --models mobilenetv2_100 resnext50_32x4d --csv matrix.csv
    python tools/export_matrix.py --models 'convnext*' --formats tflite_fp32 tflite_int8
    python tools/export_matrix.py --models 'resnext*' --formats tflite_int8 --dense-group-channels 8
"""

import argparse
import csv
import fnmatch
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo import export  # noqa: E402
from keras_convzoo.progress import ProgressBar  # noqa: E402
from keras_convzoo.testing import randomize_batch_norms  # noqa: E402

FORMATS = ("tflite_fp32", "tflite_float16", "tflite_dynamic", "tflite_int8", "onnx")
COLUMNS = ("model", "format", "size_mb", "convert_s", "rel_diff", "snr_db", "latency_ms", "status")


def tflite_latency_ms(path, threads, warmup, repeats):
    """Median latency (ms) of one batch-1 invoke of a TFLite file with XNNPACK."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.random.default_rng(0).standard_normal(detail["shape"])
    if np.issubdtype(detail["dtype"], np.integer):
        x = np.clip(np.round(x * 20), -128, 127)
    interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def export_model(name, formats, folder, size=None, threads=2, calibration_samples=32,
                 warmup=3, repeats=10, log=print, dense_group_channels=None):
    """Exports one model in ``formats``; returns one row dict per format.

    ``dense_group_channels`` is passed to ``export.to_tflite`` (TFLite formats).
    """
    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(size or spec.default_size)
    model = kcz.create_model(name, input_shape=shape, classifier_activation=None)
    randomize_batch_norms(model)
    fused = kcz.deploy.fuse(model)
    calibration = np.random.default_rng(100).standard_normal((calibration_samples,) + shape).astype("float32")
    rows = []
    for fmt in formats:
        path = os.path.join(folder, f"{name}_{fmt}" + (".onnx" if fmt == "onnx" else ".tflite"))
        row = {"model": name, "format": fmt}
        try:
            if fmt == "onnx":
                report = export.to_onnx(fused, path, input_shape=shape, dynamic_batch=False)
            else:
                quantization = {"tflite_fp32": None}.get(fmt, fmt.split("_", 1)[1])
                report = export.to_tflite(
                    fused, path, quantization=quantization, input_shape=shape,
                    representative_data=calibration if quantization == "int8" else None,
                    num_samples=8 if quantization == "int8" else 4,
                    dense_group_channels=dense_group_channels,
                )
            row.update(
                size_mb=report.file_size_bytes / 2**20,
                convert_s=report.convert_seconds,
                rel_diff=report.relative_diff,
                snr_db=report.snr_db,
                status="ok",
            )
            if fmt in ("tflite_fp32", "tflite_int8"):
                row["latency_ms"] = tflite_latency_ms(path, threads, warmup, repeats)
        except Exception as error:  # report and go on with the next format
            row["status"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        rows.append(row)
        log(format_row(row), flush=True)
        if os.path.exists(path) and os.path.isfile(path):
            os.remove(path)
    return rows


def _cell(value, spec):
    if value is None:
        return "-"
    return format(value, spec)


def matching_models(patterns, parser):
    """Registered names matching the shell ``patterns``, in order, each once; ``parser.error`` for a pattern with none."""
    names = []
    for pattern in patterns:
        matched = [n for n in kcz.list_models() if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            parser.error(f"no registered model matches {pattern!r}")
        names += [n for n in matched if n not in names]
    return names


def header():
    return (f"{'model':<22}{'format':<16}{'size MB':>9}{'convert s':>11}{'rel diff':>11}"
            f"{'SNR dB':>9}{'latency ms':>12}  status")


def format_row(row):
    return (
        f"{row['model']:<22}{row['format']:<16}{_cell(row.get('size_mb'), '.2f'):>9}"
        f"{_cell(row.get('convert_s'), '.1f'):>11}{_cell(row.get('rel_diff'), '.1e'):>11}"
        f"{_cell(row.get('snr_db'), '.1f'):>9}{_cell(row.get('latency_ms'), '.1f'):>12}  {row['status']}"
    )


def latency_summary(rows):
    """Lines ``model: int8 / fp32 TFLite latency = ratio``."""
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows):
        lat = {r["format"]: r.get("latency_ms") for r in rows if r["model"] == name}
        if lat.get("tflite_fp32") and lat.get("tflite_int8"):
            ratio = lat["tflite_int8"] / lat["tflite_fp32"]
            lines.append(f"{name}: int8 {lat['tflite_int8']:.1f} ms / fp32 {lat['tflite_fp32']:.1f} ms "
                         f"= {ratio:.2f}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["*"], metavar="PATTERN",
                        help="registry names or shell patterns (default: all)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--size", type=int, help="input side (default: each variant's, e.g. 224)")
    parser.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dense-group-channels", type=int, metavar="N",
                        help="TFLite: write grouped convs with <= N input channels per group as dense "
                             "block-diagonal convs (export.to_tflite's dense_group_channels; default: grouped)")
    parser.add_argument("--csv", metavar="FILE", help="also write the rows to a CSV file")
    args = parser.parse_args(argv)
    names = matching_models(args.models, parser)
    print(f"keras_convzoo export matrix: {len(names)} model(s), {', '.join(args.formats)}; "
          f"TFLite latency: ai_edge_litert + XNNPACK, {args.threads} threads, batch 1, "
          f"median of {args.repeats}"
          + (f"; dense_group_channels={args.dense_group_channels}" if args.dense_group_channels else ""))
    print(header())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        bar = ProgressBar("export matrix")
        for done, name in enumerate(names):
            bar(done, len(names))
            rows += export_model(name, args.formats, folder, args.size, args.threads,
                                 args.calibration_samples, args.warmup, args.repeats,
                                 dense_group_channels=args.dense_group_channels)
        bar(len(names), len(names))
    print("\nint8 / fp32 TFLite latency (target <= 0.5 for MobileNetV2 and ResNeXt50):")
    for line in latency_summary(rows):
        print("  " + line)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: row.get(k) for k in COLUMNS} for row in rows)
        print(f"wrote {args.csv}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
