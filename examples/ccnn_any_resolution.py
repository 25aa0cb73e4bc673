"""One CCNN architecture for sequences and images, and images at any resolution.

CCNN (Knigge, Romero et al., ICLR 2023) takes its dimensionality from the
input: the same ``kcz.CCNN`` call builds a 1D model for ``(length,
channels)`` sequences and a 2D model for ``(height, width, channels)``
images. This example trains both on scikit-learn's 8x8 digits (they ship
with scikit-learn):

- 1D: each digit read as a causal sequence of 64 pixels, row by row.
- 2D: each digit as an 8x8 image, built with ``resolution="continuous",
  train_size=8``, then evaluated without retraining at 8x8, 16x16 and 32x32
  (test images upsampled bilinearly). The continuous rule samples the
  learned continuous kernel on a grid r times finer over the same extent at
  r times the training size; the reference ("fixed") rule keeps the discrete
  kernel, which then covers only 1/r of the image.

The architecture and the data split are those of
``tools/ccnn_resolution_transfer.py`` (imported from there); the training
batches are shuffled with ``--seed``. Prints an accuracy-vs-resolution table
and writes ``<out>/ccnn_any_resolution.png``; the CCNN guide's table (docs/guides/ccnn.md) is the default
run, written by ``tools/run_examples.py``.

Usage:
    python examples/ccnn_any_resolution.py                     # 12 epochs, seed 0
    python examples/ccnn_any_resolution.py --epochs 12 --seeds 0 1 2   # mean (min-max) over 3 seeds
    python examples/ccnn_any_resolution.py --smoke             # 1 eager epoch on 256 digits, sizes 8 and 16
"""

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tools"))

import _common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np  # noqa: E402
from ccnn_resolution_transfer import ARCH, _data  # noqa: E402  (tools/)

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

RULES = ("continuous", "fixed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("Usage:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of each model (default 12)")
    parser.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0],
                        help="one 2D and one 1D model per seed (default 0)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="test resolutions of the 2D model (default 8 16 32; 8 16 with --smoke)")
    parser.add_argument("--train-samples", type=int, default=None, help="use only this many training digits")
    parser.add_argument("--eager", action="store_true",
                        help="train eagerly (run_eagerly=True): quicker than tracing the training step "
                             "for a few steps")
    parser.add_argument("--out", default="examples_out", help="output folder")
    _common.add_reproducibility_args(parser, seed=False)
    parser.add_argument("--smoke", action="store_true",
                        help="quick check: 1 eager epoch on 256 digits, sizes 8 and 16")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs = 1 if args.epochs is None else args.epochs
        args.sizes = args.sizes or [8, 16]
        args.train_samples = args.train_samples or 256
        args.eager = True
    args.epochs = 12 if args.epochs is None else args.epochs
    args.sizes = args.sizes or [8, 16, 32]
    return args


def evaluate(model, x, y):
    """``(top-1 accuracy, mean cross-entropy)`` from one eager call (``evaluate()`` would trace anew per size)."""
    probs = np.asarray(model(x, training=False))
    return float(np.mean(np.argmax(probs, axis=-1) == y)), _common.cross_entropy(probs, y)


def train(model, x, y, args, seed):
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", run_eagerly=args.eager)
    data = _common.training_dataset(x[: args.train_samples], y[: args.train_samples], 64, seed)
    model.fit(data, epochs=args.epochs, shuffle=False, verbose=0)  # data is shuffled already


def run_sequence(seed, args):
    """Trains a 1D CCNN on the digits as 64-step causal sequences; returns ``(accuracy, loss)`` and its size."""
    x_train, y_train, x_test, y_test = _data()
    x_train, x_test = x_train.reshape(-1, 64, 1), x_test.reshape(-1, 64, 1)
    keras.utils.set_random_seed(seed)
    # The 2D model's settings; kernel_size=None: one kernel as long as the sequence (64 taps).
    model = kcz.CCNN(input_shape=(64, 1), classes=10, seed=seed, **dict(ARCH, kernel_size=None))
    train(model, x_train, y_train, args, seed)
    return evaluate(model, x_test, y_test), model.count_params()


def run_image(seed, args):
    """Trains a 2D CCNN at 8x8; returns ``{(rule, size): (accuracy, loss)}`` and its parameter count.

    The model is built with the continuous rule (at the training size it
    computes exactly what the reference rule does); a second model with
    ``resolution="fixed"`` gets the same weights.
    """
    x_train, y_train, x_test, y_test = _data()
    keras.utils.set_random_seed(seed)
    model = kcz.CCNN(input_shape=(None, None, 1), classes=10, resolution="continuous", train_size=8,
                     seed=seed, **ARCH)
    train(model, x_train, y_train, args, seed)
    fixed = kcz.CCNN(input_shape=(None, None, 1), classes=10, resolution="fixed", seed=seed, **ARCH)
    fixed.set_weights(model.get_weights())
    row = {}
    for size in args.sizes:
        images = x_test if size == 8 else tf.image.resize(x_test, (size, size), method="bilinear").numpy()
        row[("continuous", size)] = evaluate(model, images, y_test)
        row[("fixed", size)] = evaluate(fixed, images, y_test)
    return row, model.count_params()


def summarize(values):
    return f"{np.mean(values):.3f}" + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")


def plot(rows, sequence_acc, sizes, path, epochs):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for rule, marker in zip(RULES, ("o", "s")):
        means = [np.mean([row[(rule, s)][0] for row in rows]) for s in sizes]
        ax.plot(sizes, means, marker + "-", label=f'2D, resolution="{rule}"')
    ax.axhline(np.mean(sequence_acc), color="gray", linestyle="--", label="1D, 64-step sequence")
    ax.axhline(0.1, color="lightgray", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s}x{s}" for s in sizes])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("test resolution (trained at 8x8)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"CCNN on digits, {epochs} epochs, no retraining")
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    return _common.save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    print(_common.make_reproducible(args.seeds[0], args.tf_threads))  # each model reseeds with its own seed
    out = _common.make_out_dir(args.out)
    print(f"architecture: {ARCH}")
    rows, sequence = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        (acc, loss), params = run_sequence(seed, args)
        sequence.append((acc, loss))
        print(f"seed {seed}: 1D model ({params:,} parameters) trained and tested in "
              f"{time.perf_counter() - start:.1f} s: accuracy {acc:.3f}")
        start = time.perf_counter()
        row, params = run_image(seed, args)
        rows.append(row)
        print(f"seed {seed}: 2D model ({params:,} parameters) trained at 8x8 and tested at {args.sizes} in "
              f"{time.perf_counter() - start:.1f} s")

    tested = len(_data()[3])
    trained = f"{args.train_samples} digits" if args.train_samples else "all training digits"
    print(f"\ntest accuracy ({tested} test digits), trained {args.epochs} epoch(s) on {trained} "
          f"at 8x8 / 64 steps, "
          f"mean (min-max) over seeds {args.seeds}")
    headers = ["model"] + [f"{s}x{s}" for s in args.sizes]
    table = [[f"2D {rule}"] + [summarize([row[(rule, s)][0] for row in rows]) for s in args.sizes]
             for rule in RULES]
    sequence_acc = [acc for acc, _ in sequence]
    table.append(["1D sequence (64 steps)", summarize(sequence_acc)] + [""] * (len(args.sizes) - 1))
    print(_common.format_table(headers, table))
    path = plot(rows, sequence_acc, args.sizes, os.path.join(out, "ccnn_any_resolution.png"), args.epochs)
    print(f"saved plot: {path}")
    # Means over the seeds; loss: mean test cross-entropy, a fine fingerprint of the trained weights.
    for rule in RULES:
        for s in args.sizes:
            acc, loss = np.mean([row[(rule, s)] for row in rows], axis=0)
            print(f"RESULT 2d_{rule} size={s} accuracy={acc:.4f} loss={loss:.6f} test_digits={tested}")
    acc, loss = np.mean(sequence, axis=0)
    print(f"RESULT 1d_sequence size=64 accuracy={acc:.4f} loss={loss:.6f} test_digits={tested}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
