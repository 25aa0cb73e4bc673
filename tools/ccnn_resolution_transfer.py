"""Resolution transfer of a CCNN: train on 8x8 digits, test at 8x8 and at 16x16 / 32x32 (upsampled).

Trains one small 2D CCNN on scikit-learn's 8x8 digits with
``resolution="continuous", train_size=8`` (identical to the reference's
"fixed" behaviour at the training size), then evaluates the same weights at
higher resolutions (the test images upsampled bilinearly) twice: with the
continuous rule (the kernel resampled on a finer grid over the same extent
and scaled by the step ratio) and with the reference rule (the discrete
kernel kept, so it covers a smaller part of the finer image).

Usage:
    python tools/ccnn_resolution_transfer.py [--epochs 12] [--seeds 0 1 2]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

ARCH = dict(depth=2, width=32, kernel_hidden=16, kernel_size=9, mask_init=0.5, omega_0=0.5)


def _data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0 - 0.5).astype("float32")[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:1400]], digits.target[order[:1400]], x[order[1400:]], digits.target[order[1400:]]


def run(seed, epochs, sizes):
    x_train, y_train, x_test, y_test = _data()
    keras.utils.set_random_seed(seed)
    model = kcz.CCNN(input_shape=(None, None, 1), classes=10, resolution="continuous", train_size=8, seed=seed, **ARCH)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    fixed = kcz.CCNN(input_shape=(None, None, 1), classes=10, resolution="fixed", seed=seed, **ARCH)
    fixed.set_weights(model.get_weights())
    fixed.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    row = {}
    for size in sizes:
        images = tf.image.resize(x_test, (size, size), method="bilinear").numpy() if size != 8 else x_test
        row[("continuous", size)] = model.evaluate(images, y_test, verbose=0)[1]
        row[("fixed", size)] = fixed.evaluate(images, y_test, verbose=0)[1]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args(argv)
    rows = [run(seed, args.epochs, args.sizes) for seed in args.seeds]
    print(f"test accuracy, trained at 8x8 ({args.epochs} epochs), mean (min-max) over seeds {args.seeds}")
    print(f"{'rule':<12}" + "".join(f"{f'{s}x{s}':>20}" for s in args.sizes))
    for rule in ("continuous", "fixed"):
        cells = []
        for size in args.sizes:
            values = [row[(rule, size)] for row in rows]
            cells.append(f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"{rule:<12}" + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
