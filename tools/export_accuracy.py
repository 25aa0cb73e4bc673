"""Test accuracy of exported files of trained models, Keras vs file, per family and mode.

Trains each family's tiny twin on scikit-learn's digits (0-255 RGB pixels,
scaling inside the model, the backbone nested as in a transfer model),
exports it with ``keras_convzoo.export`` in fp32 / float16 / dynamic / int8
TFLite and ONNX (int8 calibrated on training images), runs every file on the
held-out digits and prints, per family and mode, the test accuracy of Keras
and of the file, the top-1 agreement and the output SNR against Keras, on the
real test images and on the exporters' default verification inputs. These
numbers set the verification tolerances of ``keras_convzoo.export.report``.

    python tools/export_accuracy.py --out docs/benchmarks/export-accuracy.md   # every family, 32 px
    python tools/export_accuracy.py --names mobilenetv2_100 --epochs 4
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

FAMILIES = (
    "resnext50_32x4d",
    "seresnet50",
    "mobilenetv2_100",
    "convnext_tiny",
    "replknet31_base",
    "shufflenet_v2_x1_0",
    "ccnn_4_140",
)
MODES = ("fp32", "float16", "dynamic", "int8", "onnx")


def snr_db(reference, candidate):
    """``10 log10(signal power / error power)`` of two output arrays."""
    reference = np.asarray(reference, "float64")
    error = np.asarray(candidate, "float64") - reference
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum(error**2), 1e-30)))


def measure(name, args, folder):
    from keras_convzoo import export
    from keras_convzoo.export.inputs import synthetic_inputs
    from keras_convzoo.testing.digits import accuracy, train_digits_classifier

    start = time.perf_counter()
    model, (x_train, _, x_test, y_test) = train_digits_classifier(name, size=args.size, epochs=args.epochs, seed=args.seed)
    reference = model.predict(x_test, verbose=0)
    synthetic, _ = synthetic_inputs(model, (args.size, args.size, 3), args.synthetic_samples, seed=0)
    reference_synthetic = model.predict(synthetic, verbose=0)
    print(f"{name}: trained in {time.perf_counter() - start:.0f} s, Keras test accuracy {accuracy(reference, y_test):.3f}",
          flush=True)
    rows = []
    for mode in MODES:
        path = os.path.join(folder, f"{name}_{mode}.{'onnx' if mode == 'onnx' else 'tflite'}")
        try:
            if mode == "onnx":
                export.to_onnx(model, path, verify=False)
                run = export.run_onnx
            else:
                quantization = None if mode == "fp32" else mode
                calibration = x_train[: args.calibration] if mode == "int8" else None
                export.to_tflite(model, path, quantization=quantization, representative_data=calibration, verify=False)
                run = export.run_tflite
            (out,) = run(path, x_test)
            (out_synthetic,) = run(path, synthetic)
        except Exception as error:  # report and go on with the other modes
            print(f"  {mode}: FAILED {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
            rows.append((name, mode, accuracy(reference, y_test), None, None, None, None, None))
            continue
        row = (
            name,
            mode,
            accuracy(reference, y_test),
            accuracy(out, y_test),
            float(np.mean(out.argmax(-1) == reference.argmax(-1))),
            snr_db(reference, out),
            snr_db(reference_synthetic, out_synthetic),
            float(np.max(np.abs(out - reference)) / np.max(np.abs(reference))),
        )
        rows.append(row)
        print("  " + format_row(row), flush=True)
    return rows


def format_row(row):
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    name, mode, keras_acc, file_acc, agree, snr_real, snr_syn, rel = row
    return (f"{name:20s} {mode:8s} keras {f(keras_acc, '.3f')} file {f(file_acc, '.3f')} agree {f(agree, '.3f')} "
            f"snr(test) {f(snr_real, '6.1f')} dB snr(default inputs) {f(snr_syn, '6.1f')} dB rel {f(rel, '.2e')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=list(FAMILIES))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--calibration", type=int, default=100, help="calibration images for int8")
    parser.add_argument("--synthetic-samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="FILE.md", help="also write the table as a Markdown page (docs/benchmarks/export-accuracy.md)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.names:
            rows.extend(measure(name, args, folder))
    text = markdown(rows, args, argv)
    print("\n" + text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


def markdown(rows, args, argv):
    """The page: machine, method, one row per family and mode."""
    import platform

    import keras
    import tensorflow as tf

    from keras_convzoo.export.report import tolerance_for

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
        wanted = ("avx2", "avx512f", "avx512_vnni", "amx_int8")
        cpu = (names[0] if names else cpu) + f" ({', '.join(f for f in wanted if f in flags)})"
    command = "python tools/export_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Exported files of trained models",
        "",
        f"Generated by `tools/export_accuracy.py` (`{command.strip()}`).",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} cores; TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}",
        f"- Each family's tiny twin (random init) trained {args.epochs} epochs (Adam) on scikit-learn's digits as "
        f"{args.size}x{args.size} RGB images with 0-255 pixels, the input scaling inside the model and the backbone "
        "nested as in a transfer model (`keras_convzoo.testing.digits`); exported with `keras_convzoo.export` "
        f"(int8 calibrated on {args.calibration} training images); every file run on the held-out digits.",
        "- Agreement: share of test images whose top-1 class equals Keras'. SNR: `10 log10(signal / error power)` "
        "of the probabilities against Keras, on the test images and on the exporters' default inputs "
        f"(synthetic images in the model's range, {args.synthetic_samples} of them).",
        "- The exporters' checks (`keras_convzoo.export.report`): "
        + "; ".join(
            f"{mode} {' and '.join(str(c) for c in tolerance_for('tflite', None if mode == 'fp32' else mode))}"
            for mode in ("fp32", "float16", "dynamic", "int8")
        )
        + f"; ONNX {' and '.join(str(c) for c in tolerance_for('onnx'))}.",
        "- The table compares each file with its own Keras model; some tiny twins train poorly in so few "
        "epochs (low Keras accuracy), which makes their agreement the stricter test (more near ties).",
        "",
        "| family | mode | Keras accuracy | file accuracy | top-1 agreement | SNR test (dB) | SNR default inputs (dB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, mode, keras_acc, file_acc, agree, snr_real, snr_syn, _ in rows:
        cells = [name, mode] + ["-" if v is None else f"{v:.3f}" for v in (keras_acc, file_acc, agree)]
        cells += ["-" if v is None else f"{v:.1f}" for v in (snr_real, snr_syn)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
