"""TFLite for phones: train a small classifier, export it four ways, compare the files.

Trains a small model on scikit-learn's digits (RGB, upsampled; they ship
with scikit-learn) or loads one with ``--model-file``, folds its
BatchNormalizations (``kcz.deploy.fuse``) and writes four TFLite files with
``kcz.export.to_tflite``: float32, float16 weights, dynamic-range (int8
weights) and full int8, the last calibrated on real training images. Each
file is run with the LiteRT interpreter (``ai_edge_litert``, the runtime
Android/iOS apps ship) through ``kcz.export.run_tflite``, and a table shows
its size, median batch-1 latency, top-1 agreement with the Keras model and
accuracy on the test split.

The model takes RGB images with values 0-255: the input scaling of the
architecture (``kcz.preprocess_input``) is part of the graph, so an app feeds
camera pixels directly.

Usage:
    python examples/tflite_for_phones.py                          # mobilenetv2_035, 64x64 digits
    python examples/tflite_for_phones.py --model shufflenet_v2_x0_5 --epochs 15
    python examples/tflite_for_phones.py --model-file examples_out/mobilenetv2_035_transfer.keras
    python examples/tflite_for_phones.py --smoke                  # tiny twin, 2 epochs on 256 images
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

QUANTIZATIONS = (None, "float16", "dynamic", "int8")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("Usage:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mobilenetv2_035", help="registry name to train (see `convzoo list`)")
    parser.add_argument("--model-file", default=None,
                        help="a saved .keras classifier of 0-255 RGB digit images to export instead of training")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side of the trained model / the files (default 64; 32 with --smoke)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 12; 2 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tiny", action="store_true", help="the model's tiny test twin")
    parser.add_argument("--eager", action="store_true",
                        help="train eagerly (run_eagerly=True): quicker than tracing the training step for a few steps")
    parser.add_argument("--calibration-samples", type=int, default=None,
                        help="training images calibrating the int8 file (default 200; 32 with --smoke)")
    parser.add_argument("--latency-runs", type=int, default=None, help="timed runs per file (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                        help="export the fused inference form (kcz.deploy.fuse; default: on)")
    parser.add_argument("--out", default="examples_out", help="output folder")
    _common.add_reproducibility_args(parser)
    parser.add_argument("--check-samples", type=int, default=200,
                        help="held-out images each file is checked on against Keras (default 200)")
    parser.add_argument("--smoke", action="store_true",
                        help="quick check: tiny twin, 2 eager epochs on 256 images, 32 calibration images")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tiny = True
        args.eager = True
        args.image_size = args.image_size or 32
        args.epochs = 2 if args.epochs is None else args.epochs
        args.calibration_samples = args.calibration_samples or 32
        args.latency_runs = args.latency_runs or 20
    args.image_size = args.image_size or 64
    args.epochs = 12 if args.epochs is None else args.epochs
    args.calibration_samples = args.calibration_samples or 200
    args.latency_runs = args.latency_runs or 200
    return args


def build_classifier(args):
    """0-255 RGB images -> the architecture's scaling -> the registered model with a 10-class head.

    ``input_tensor`` (as in keras.applications) keeps the graph flat, so
    ``kcz.deploy.fuse`` folds every BatchNormalization. Families with a
    ``bn_momentum`` setting get 0.9: keras.applications' 0.999 (MobileNetV2)
    leaves the moving statistics far from the data after a short training
    from scratch, and the model then fails at inference.
    """
    spec = kcz.get_spec(args.model)
    overrides = dict(spec.test_overrides) if args.tiny else {}
    if "bn_momentum" in spec.config_fields:
        overrides["bn_momentum"] = 0.9
    inputs = keras.Input((args.image_size, args.image_size, 3), name="image")
    scaled = _common.apply_layers(_common.input_scaling(args.model), inputs)
    return kcz.create_model(args.model, input_tensor=scaled, classes=10, weights=None, **overrides)


def train(model, args, x_train, y_train, x_test, y_test):
    model.compile(keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=args.eager)
    start = time.perf_counter()
    model.fit(_common.training_dataset(x_train, y_train, args.batch_size, args.seed), epochs=args.epochs,
              validation_data=(x_test, y_test), shuffle=False, verbose=2)  # the dataset is shuffled already
    print(f"trained {args.epochs} epoch(s) in {time.perf_counter() - start:.1f} s")


def tflite_latency_ms(path, sample, threads, runs):
    """Median ``invoke()`` time of a batch-1 file in milliseconds (input set once)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if np.issubdtype(detail["dtype"], np.integer):
        scale, zero_point = detail["quantization"]
        sample = np.clip(np.round(sample / scale + zero_point), -128, 127)
    interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
    return _common.median_latency_ms(interpreter.invoke, repeats=runs)


def keras_latency_ms(model, sample, runs):
    """Median batch-1 latency of the Keras model in a ``tf.function`` (graph mode)."""
    serve = tf.function(lambda x: model(x, training=False))
    x = tf.constant(sample)
    return _common.median_latency_ms(lambda: serve(x).numpy(), repeats=runs)


def export_all(model, args, x_cal, x_check, out, stem):
    """Writes the four files, each checked against Keras on real images; returns ``[(label, path, passed)]``.

    ``to_tflite`` runs each file on ``x_check`` (held-out digits, 0-255
    pixels like the app's camera frames) and rejects it when its SNR or its
    top-1 agreement with Keras is below the mode's bound. A rejected file is
    kept aside (``keep_failed=True``) so the table below still shows it.
    """
    shape = (args.image_size, args.image_size, 3)
    rows = []
    for quantization in QUANTIZATIONS:
        label = quantization or "float32"
        path = os.path.join(out, f"{stem}_{label}.tflite")
        try:
            report = kcz.export.to_tflite(
                model, path, quantization=quantization, input_shape=shape, verification_data=x_check,
                representative_data=x_cal if quantization == "int8" else None, keep_failed=True,
            )
            check = (f"checked on {report.verification_inputs}: SNR {report.snr_db:.1f} dB, top-1 agreement "
                     f"{report.top1_agreement:.3f} ({report.tolerance})")
            if quantization == "int8":
                check += f", full-integer: {not report.float_ops}"
        except kcz.export.VerificationError as e:
            report = None
            path = kcz.export.rejected_path(path)
            check = "check FAILED: " + str(e).split("model: ")[-1].split(" (max_abs")[0]
        converted = f", converted in {report.convert_seconds:.1f} s" if report else ""
        print(f"wrote {path}: {_common.format_size(os.path.getsize(path))}{converted}, {check}")
        rows.append((label, path, report is not None))
    return rows


def snr_db(reference, approximation):
    """10 log10(signal power / error power) of two output arrays (inf when identical)."""
    error = np.mean((reference - approximation) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(np.mean(reference**2) / error))


def main(argv=None):
    args = parse_args(argv)
    print(_common.make_reproducible(args.seed, args.tf_threads))
    out = _common.make_out_dir(args.out)
    limit = 256 if args.smoke else None
    x_train, y_train, x_test, y_test = _common.load_digits_images(args.image_size, 3, seed=args.seed, limit=limit)

    if args.model_file:
        model = keras.models.load_model(args.model_file)
        keras_path = args.model_file
        stem = os.path.splitext(os.path.basename(args.model_file))[0]
        print(f"loaded {args.model_file}")
    else:
        model = build_classifier(args)
        stem = f"{args.model}_digits"
        print(f"training {args.model}{' (tiny twin)' if args.tiny else ''} on digits at "
              f"{args.image_size}x{args.image_size}: {model.count_params():,} parameters")
        train(model, args, x_train, y_train, x_test, y_test)
        keras_path = os.path.join(out, f"{stem}.keras")
        model.save(keras_path)
        print(f"saved {keras_path}")

    deployed = model
    if args.fuse:
        try:
            deployed = kcz.deploy.fuse(model)
            before, after = (list(kcz.export.lowering.iter_layers(m)) for m in (model, deployed))
            norms = [sum(isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
                     for layers in (before, after)]
            print(f"fused: {norms[0]} -> {norms[1]} BatchNormalization layers, {len(before)} -> {len(after)} layers "
                  "(nested models included)")
        except TypeError as e:  # e.g. a subclassed model
            print(f"not fused ({e})")

    keras_probs = model.predict(x_test, batch_size=128, verbose=0)
    keras_top1 = keras_probs.argmax(-1)
    sample = x_test[:1]
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    results = [("keras (graph mode)", weight_bytes, keras_latency_ms(model, sample, args.latency_runs),
                1.0, float(np.mean(keras_top1 == y_test)), float("inf"), _common.cross_entropy(keras_probs, y_test))]

    order = np.random.default_rng(args.seed).permutation(len(x_train))
    x_cal = x_train[order[: args.calibration_samples]]
    print(f"\nexporting ({args.calibration_samples} training images calibrate the int8 file)")
    checks = {"keras": "-"}
    for label, path, passed in export_all(deployed, args, x_cal, x_test[: args.check_samples], out, stem):
        checks[label] = "passed" if passed else "rejected"
        (probs,) = kcz.export.run_tflite(path, x_test, num_threads=args.threads)
        top1 = probs.argmax(-1)
        results.append((f"tflite {label}", os.path.getsize(path),
                        tflite_latency_ms(path, sample, args.threads, args.latency_runs),
                        float(np.mean(top1 == keras_top1)), float(np.mean(top1 == y_test)),
                        snr_db(keras_probs, probs), _common.cross_entropy(probs, y_test)))

    print(f"\n{len(x_test)} test images; latency: batch 1, median of {args.latency_runs} runs, "
          f"{args.threads} thread(s); agreement: top-1 equal to the Keras model's; SNR of the "
          "probabilities against Keras; keras size: its float32 weights")
    headers = ("model", "size", "latency ms", "agreement", "accuracy", "SNR dB")
    rows = [(name, _common.format_size(size), f"{ms:.3f}", f"{agree:.4f}", f"{acc:.4f}", f"{snr:.1f}")
            for name, size, ms, agree, acc, snr, _ in results]
    print(_common.format_table(headers, rows))
    # loss: mean test cross-entropy, a fine fingerprint of the weights (identical lines: identical models).
    # check: the file's to_tflite check on --check-samples held-out digits (a rejected file is kept aside).
    for name, size, ms, agree, acc, snr, loss in results:
        label = name.split()[-1] if name.startswith("tflite") else "keras"
        print(f"RESULT {label} size_bytes={size} check={checks[label]} "
              f"latency_ms={ms:.4f} agreement={agree:.4f} accuracy={acc:.4f} snr_db={snr:.1f} "
              f"loss={loss:.6f} test_images={len(y_test)} latency_runs={args.latency_runs} threads={args.threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
