"""Small helpers shared by the examples: the digits data set, timing, tables.

Not part of the package: each example adds its own folder to ``sys.path``
(Python does that for a script) and imports these.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_convzoo.profile.benchmark import times_ms  # noqa: E402


def load_digits_images(size=32, channels=3, test_fraction=0.25, seed=0, limit=None):
    """scikit-learn's 8x8 digits as RGB images with values 0-255, split in train/test.

    The data ship with scikit-learn (nothing is downloaded). The 8x8 images
    (values 0-16) are scaled to 0-255, resized bilinearly to ``size`` x
    ``size`` and repeated over ``channels``, like photos in the range
    ``keras.applications`` models expect before ``preprocess_input``.

    Args:
        size: output side in pixels (8 keeps the original images).
        channels: 1 or 3.
        test_fraction: share of the 1797 images held out, stratified by class.
        seed: seed of the split.
        limit: keep at most this many images in each split (quick runs).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 ``(N, size, size,
        channels)`` images and int64 labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    x_train, x_test = (resize_images(x, size, channels) for x in (x_train, x_test))
    return x_train, y_train.astype("int64"), x_test, y_test.astype("int64")


def resize_images(images, size, channels=None):
    """Bilinear resize of ``(N, H, W, C)`` float images to ``size`` x ``size`` (numpy in, numpy out)."""
    import tensorflow as tf

    images = np.asarray(images, "float32")
    if images.shape[1:3] != (size, size):
        images = tf.image.resize(images, (size, size), method="bilinear").numpy()
    if channels is not None and images.shape[-1] != channels:
        images = np.repeat(images, channels, axis=-1)
    return images


def input_scaling(model):
    """Standard Keras layers computing ``kcz.preprocess_input(x, model)`` (0-255 RGB in).

    ``model`` is a registry name or a built model (then the scaling of the
    weights it loaded). Flat standard layers keep a saved ``.keras`` file
    self-contained and convert to TFLite / ONNX. Models without ImageNet
    preprocessing (e.g. CCNN) get the "tf" scaling to -1..1.
    """
    import keras_convzoo as kcz

    name = model if isinstance(model, str) else model.convzoo_name
    has_scaling = kcz.get_spec(name).preprocessing or kcz.list_pretrained(name)
    return kcz.preprocessing_layers(model, mode=None if has_scaling else "tf")


def apply_layers(layers, x):
    """``x`` through each layer of ``layers`` in turn."""
    for layer in layers:
        x = layer(x)
    return x


def median_latency_ms(fn, repeats=50, warmup=3):
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls (after ``warmup``)."""
    return float(np.median(times_ms(fn, warmup, repeats)))


def format_table(headers, rows):
    """A plain-text table: left-aligned first column, right-aligned others."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def format_size(num_bytes):
    """``"12.3 KiB"`` / ``"4.56 MiB"``."""
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.1f} KiB"
    return f"{num_bytes / 1024 / 1024:.2f} MiB"


def make_out_dir(path):
    """Creates ``path`` (and parents) and returns it."""
    os.makedirs(path, exist_ok=True)
    return path


def save_figure(fig, path):
    """Saves a matplotlib figure and closes it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
