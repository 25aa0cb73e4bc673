"""Benchmark of the TFLite export lowering of large depthwise kernels (``depthwise_max_taps``).

XNNPACK (the CPU delegate of LiteRT) runs depthwise kernels of up to 25 taps
in one pass and larger ones through a multipass kernel. This script measures,
in one process with the files timed in alternating rounds
(``profile.interleaved_times``), the same model exported by
``export.to_tflite`` twice: with ``depthwise_max_taps=None`` (each depthwise
kernel whole) and with the default 25 (kernels of more taps written as sums
of pieces of at most 25), float32 and full int8. It prints milliseconds, the
ratio tiled / whole, the op counts and the XNNPACK delegate partitions of
each file, and each file's SNR against the Keras model (int8 loses some with
tiling: every ADD of the pieces re-quantizes). "tiled" is
``depthwise_max_taps=25``, ``to_tflite``'s default ("auto") for float and int8.

Part 1: one depthwise layer per kernel size (56x56x96, batch 1).
Part 2: whole models from the registry (default ``convnext_tiny``; add
``replknet31_base`` for the 31x31 kernels, ``ccnn_4_140@32`` for CCNN's
33x33 generated kernels at 32x32), random weights with random
BatchNormalization statistics, logits (no softmax: the SNR of 1000 random
probabilities says little), fused, 224x224 unless ``NAME@SIZE``, batch 1.
CCNN_4,140 is built as the official CIFAR-10 command builds it (mask init
0.75: its kernels keep all 33x33 taps).
Part 3: what a keras.applications user gets without this package: our fused
model through ``to_tflite`` against the keras.applications model through the
stock ``tf.lite.TFLiteConverter.from_keras_model`` (int8: the usual
representative-dataset recipe) and through ``to_tflite``, timed together.

Usage:
    python tools/benchmark_tflite_lowering.py
    python tools/benchmark_tflite_lowering.py --models convnext_tiny replknet31_base ccnn_4_140@32 --repeats 20 \
        --out docs/benchmarks/tflite-lowering.md
    python tools/benchmark_tflite_lowering.py --kernels 7 --models --anchors   # part 1 only, one size
"""

import argparse
import collections
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402
from keras_convzoo.export.tflite import run_tflite  # noqa: E402
from keras_convzoo.profile import interleaved_times  # noqa: E402
from keras_convzoo.testing import randomize_batch_norms  # noqa: E402
from benchmark_vs_anchors import cpu_model, keras_application  # noqa: E402

VARIANTS = (("whole", None), ("tiled", kcz.export.DEPTHWISE_MAX_TAPS))
LINES = []
WHOLE_VS_TILED = (
    '"whole": `depthwise_max_taps=None`; "tiled": `depthwise_max_taps=25`, `to_tflite`\'s default ("auto") '
    'in float and int8 files.'
)


def emit(text=""):
    """Prints ``text`` and keeps it for ``--out``."""
    print(text, flush=True)
    LINES.append(text)


#: Registry overrides of part 2 (module doc).
MODEL_OVERRIDES = {"ccnn_4_140": {"mask_init": 0.75}}


def registry_model(entry, default_size):
    """``(name, size, fused model)`` of a part-2 entry ``NAME`` or ``NAME@SIZE``."""
    name, _, size = entry.partition("@")
    size = int(size) if size else default_size
    model = kcz.create_model(name, input_shape=(size, size, kcz.get_spec(name).input_channels),
                             classifier_activation=None, **MODEL_OVERRIDES.get(name, {}))
    return name, size, kcz.deploy.fuse(randomize_batch_norms(model, seed=0))


def depthwise_model(kernel, size, channels):
    inputs = keras.Input((size, size, channels))
    layer = kcz.layers.DepthwiseConv2D(kernel, padding="same")
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def export_pair(model, size, folder, stem, quantization, calibration):
    """``{variant: path}`` of the file written whole and tiled."""
    paths = {}
    for variant, max_taps in VARIANTS:
        path = os.path.join(folder, f"{stem}_{quantization or 'fp32'}_{variant}.tflite")
        extra = dict(quantization="int8", representative_data=calibration) if quantization else {}
        kcz.export.to_tflite(model, path, input_shape=(size, size, model.input.shape[-1]), verify=False,
                             depthwise_max_taps=max_taps, **extra)
        paths[variant] = path
    return paths


def interpreter_call(path, x, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    return interpreter.invoke, ops


def snr_db(reference, candidate):
    noise = float(np.sum((candidate - reference) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def compare(label, model, paths, x, threads, repeats, rounds):
    calls, ops = {}, {}
    for variant, path in paths.items():
        calls[variant], ops[variant] = interpreter_call(path, x, threads)
    reference = model(x, training=False).numpy()
    snr = {variant: snr_db(reference, run_tflite(path, x)[0]) for variant, path in paths.items()}
    times = interleaved_times(calls, warmup=2, repeats=repeats, rounds=rounds)
    medians = {variant: float(np.median(t)) for variant, t in times.items()}
    whole, tiled = medians["whole"], medians["tiled"]
    emit(f"| {label} | {whole:.2f} | {tiled:.2f} | {tiled / whole:.2f} | "
         f"{ops['whole']['DEPTHWISE_CONV_2D']} -> {ops['tiled']['DEPTHWISE_CONV_2D']} | "
         f"{ops['whole']['DELEGATE']} / {ops['tiled']['DELEGATE']} | {snr['whole']:.1f} / {snr['tiled']:.1f} |")


def stock_tflite(model, path, calibration):
    """The keras.applications user's file: ``TFLiteConverter.from_keras_model`` (int8 when calibrated)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path


def against_stock(ours_name, keras_name, size, folder, x, calibration, args):
    ours = kcz.deploy.fuse(kcz.create_model(ours_name, input_shape=(size, size, 3)))
    anchor = keras_application(keras_name, size)
    for quantization in (None, "int8"):
        tag = quantization or "fp32"
        extra = dict(quantization="int8", representative_data=calibration) if quantization else {}
        paths = {}
        for label, model in (("ours", ours), ("keras_to_tflite", anchor)):
            paths[label] = os.path.join(folder, f"{label}_{ours_name}_{tag}.tflite")
            kcz.export.to_tflite(model, paths[label], input_shape=(size, size, 3), verify=False, **extra)
        paths["keras_stock"] = stock_tflite(anchor, os.path.join(folder, f"stock_{keras_name}_{tag}.tflite"),
                                            calibration if quantization else None)
        calls = {label: interpreter_call(path, x, args.threads)[0] for label, path in paths.items()}
        times = interleaved_times(calls, warmup=2, repeats=args.repeats, rounds=args.rounds)
        ms = {label: float(np.median(t)) for label, t in times.items()}
        emit(f"| {ours_name} vs {keras_name} {tag} | {ms['ours']:.1f} | {ms['keras_stock']:.1f} | "
             f"{ms['keras_to_tflite']:.1f} | {ms['ours'] / ms['keras_stock']:.2f} | "
             f"{ms['ours'] / ms['keras_to_tflite']:.2f} |")


def header(title):
    emit(f"\n{title}\n")
    emit("| case | whole ms | tiled ms | tiled / whole | DEPTHWISE_CONV_2D ops | delegate partitions "
         "(whole / tiled) | SNR against Keras dB (whole / tiled) |")
    emit("|---|---:|---:|---:|---|---|---:|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, nargs="*", default=[3, 5, 7, 9, 13, 31],
                        help="depthwise kernel sizes of part 1 (none: skip part 1)")
    parser.add_argument("--models", nargs="*", default=["convnext_tiny"], metavar="NAME[@SIZE]",
                        help="registered model names of part 2, each at --size or @SIZE (none: skip part 2)")
    parser.add_argument("--anchors", nargs="*", default=["convnext_tiny:ConvNeXtTiny"], metavar="OURS:KERAS",
                        help="part 3 pairs of a registered model and a keras.applications name (none: skip)")
    parser.add_argument("--size", type=int, default=224, help="input size of parts 2 and 3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", metavar="FILE", help="also write the tables to this Markdown file (docs/benchmarks/tflite-lowering.md)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    import ai_edge_litert

    emit("# TFLite export lowerings: large depthwise kernels whole vs tiled")
    emit()
    command = " ".join(argv if argv is not None else sys.argv[1:])
    emit(f"Generated by `python tools/benchmark_tflite_lowering.py {command}`"
         f" on {cpu_model()} ({os.cpu_count()} logical cores), TensorFlow {tf.__version__}, "
         f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}, load average {os.getloadavg()[0]:.2f}.")
    emit()
    emit(f"XNNPACK, {args.threads} threads, batch 1, medians of {args.repeats} runs in {args.rounds} "
         "alternating rounds")
    emit(WHOLE_VS_TILED)
    with tempfile.TemporaryDirectory() as folder:
        if args.kernels:
            header("Part 1: one depthwise layer, 56x56x96")
            x = rng.uniform(-1, 1, (1, 56, 56, 96)).astype("float32")
            calibration = rng.uniform(-1, 1, (8, 56, 56, 96)).astype("float32")
            for kernel in args.kernels:
                model = depthwise_model(kernel, 56, 96)
                for quantization in (None, "int8"):
                    paths = export_pair(model, 56, folder, f"dw{kernel}", quantization, calibration)
                    compare(f"{kernel}x{kernel} {quantization or 'fp32'}", model, paths, x, args.threads, args.repeats,
                            args.rounds)
        if args.models:
            header("Part 2: whole models (random weights and BatchNorm statistics, logits, deploy.fuse)")
            for entry in args.models:
                name, size, model = registry_model(entry, args.size)
                x = rng.uniform(-1, 1, (1, size, size, 3)).astype("float32")
                calibration = rng.uniform(-1, 1, (8, size, size, 3)).astype("float32")
                for quantization in (None, "int8"):
                    paths = export_pair(model, size, folder, name, quantization, calibration)
                    compare(f"{name} {size}x{size} {quantization or 'fp32'}", model, paths, x, args.threads,
                            args.repeats, args.rounds)
        if args.anchors:
            emit(f"\nPart 3: against keras.applications, {args.size}x{args.size}\n")
            emit("| case | ours ms | keras stock converter ms | keras through to_tflite ms | ours / stock | "
                 "ours / keras to_tflite |")
            emit("|---|---:|---:|---:|---:|---:|")
            x = rng.uniform(-1, 1, (1, args.size, args.size, 3)).astype("float32")
            calibration = rng.uniform(-1, 1, (8, args.size, args.size, 3)).astype("float32")
            for pair in args.anchors:
                ours_name, _, keras_name = pair.partition(":")
                against_stock(ours_name, keras_name, args.size, folder, x, calibration, args)
    if args.out:
        write(args.out)


def write(path):
    with open(path, "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
