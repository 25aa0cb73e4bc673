"""Export a keras_convzoo model to ONNX and run it with onnxruntime.

Builds a registered model (random weights unless ``--weights``), folds its
BatchNormalizations (``kcz.deploy.fuse``, unless ``--no-fuse``), writes an
ONNX file with ``kcz.export.to_onnx`` (dynamic batch; with
``--dynamic-size`` dynamic height and width too; checked against Keras
while writing), then runs the file with onnxruntime on real
photos (the two sample photos that ship with scikit-learn, plus
scikit-image's when it is installed), scaled with ``kcz.preprocess_input``,
and prints the largest difference from the Keras model and the batch-1
latency of both.

Usage:
    python examples/export_onnx.py                                  # mobilenetv2_100, 224x224
    python examples/export_onnx.py --model convnext_tiny --weights imagenet --dynamic-size
    python examples/export_onnx.py --model resnext50_32x4d --image-size 160 --out onnx_out
    python examples/export_onnx.py --smoke                          # tiny twin, 32x32
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import tf  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("Usage:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mobilenetv2_100", help="registry name (see `convzoo list`)")
    parser.add_argument("--weights", default=None, help="'imagenet' or a weights file (default: random)")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default 224; 32 with --smoke)")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="keep height and width dynamic in the file (checked at two sizes)")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                        help="export the fused inference form (default: on)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tiny", action="store_true", help="the model's tiny test twin")
    parser.add_argument("--latency-runs", type=int, default=None, help="timed runs (default 50; 10 with --smoke)")
    parser.add_argument("--out", default="examples_out", help="output folder")
    _common.add_reproducibility_args(parser)
    parser.add_argument("--smoke", action="store_true", help="quick check: tiny twin, 32x32")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tiny = True
        args.image_size = args.image_size or 32
        args.latency_runs = args.latency_runs or 10
    args.image_size = args.image_size or 224
    args.latency_runs = args.latency_runs or 50
    return args


def sample_photos(size):
    """Real RGB photos (0-255) resized to ``size``: scikit-learn's two, scikit-image's when installed."""
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    names = ["sklearn china", "sklearn flower"]
    try:
        from skimage import data
    except ImportError:
        pass
    else:
        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            photos.append(getattr(data, name)())
            names.append(f"skimage {name}")
    # Central square crop, then resize (keras.utils.load_img + crop_to_aspect_ratio would do the same).
    batch = []
    for photo in photos:
        h, w = photo.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = photo[top : top + side, left : left + side, :3].astype("float32")
        batch.append(tf.image.resize(crop, (size, size), method="bilinear", antialias=True).numpy())
    return np.stack(batch), names


def onnx_latency_ms(path, x, runs):
    """Median onnxruntime ``run`` time of one input (CPU execution provider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _common.median_latency_ms(lambda: session.run(None, {name: x}), repeats=runs)


def keras_latency_ms(model, x, runs):
    serve = tf.function(lambda t: model(t, training=False))
    x = tf.constant(x)
    return _common.median_latency_ms(lambda: serve(x).numpy(), repeats=runs)


def main(argv=None):
    args = parse_args(argv)
    print(_common.make_reproducible(args.seed, args.tf_threads))  # the random weights
    out = _common.make_out_dir(args.out)
    spec = kcz.get_spec(args.model)
    overrides = dict(spec.test_overrides) if args.tiny else {}
    size = args.image_size
    shape = (None, None, 3) if args.dynamic_size else (size, size, 3)
    model = kcz.create_model(args.model, weights=args.weights, input_shape=shape, **overrides)
    if args.fuse:
        model = kcz.deploy.fuse(model)
    print(f"model: {args.model}{' (tiny twin)' if args.tiny else ''}{', fused' if args.fuse else ''}, "
          f"weights: {args.weights or 'random'}, input {shape}, {model.count_params():,} parameters")

    path = os.path.join(out, f"{args.model}.onnx")
    start = time.perf_counter()
    report = kcz.export.to_onnx(model, path, opset=args.opset)
    print(f"wrote {path}: {_common.format_size(report.file_size_bytes)} in {time.perf_counter() - start:.1f} s "
          f"(input {report.input_shape}); checked on {report.verification_inputs}: relative diff "
          f"{report.relative_diff:.1e} "
          f"({report.tolerance})")

    sizes = [size, size + size // 2] if args.dynamic_size else [size]
    rows = []
    for side in sizes:
        photos, names = sample_photos(side)
        x = kcz.preprocess_input(photos, args.model) if spec.preprocessing else photos / 127.5 - 1.0
        x = x.astype("float32")
        expected = model.predict(x, verbose=0)
        (got,) = kcz.export.run_onnx(path, x)
        max_diff = float(np.max(np.abs(got - expected)))
        relative = max_diff / max(float(np.max(np.abs(expected))), 1e-12)
        agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
        onnx_ms = onnx_latency_ms(path, x[:1], args.latency_runs)
        keras_ms = keras_latency_ms(model, x[:1], args.latency_runs)
        rows.append((f"{side}x{side}", len(x), f"{max_diff:.2e}", f"{relative:.2e}", f"{agreement:.3f}",
                     f"{onnx_ms:.2f}", f"{keras_ms:.2f}"))
        print(f"RESULT size={side} photos={len(x)} max_abs_diff={max_diff:.3e} relative_diff={relative:.3e} "
              f"top1_agreement={agreement:.4f} onnx_ms={onnx_ms:.3f} keras_ms={keras_ms:.3f} "
              f"file_bytes={report.file_size_bytes} latency_runs={args.latency_runs}")
    if args.weights and getattr(model.output, "shape", (0, 0))[-1] == 1000:
        for name, top in zip(names, kcz.decode_predictions(got, top=3)):
            print(f"{name}: " + ", ".join(f"{label} {score:.2f}" for _, label, score in top))

    print(f"\nonnxruntime vs Keras on {len(names)} photos ({', '.join(names)}); "
          f"latency: batch 1, median of {args.latency_runs} runs (Keras: tf.function graph mode)")
    headers = ("input", "photos", "max abs diff", "relative", "top-1 agree", "onnxruntime ms", "keras ms")
    print(_common.format_table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
