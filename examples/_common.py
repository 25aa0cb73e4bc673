"""Small helpers shared by the examples: reproducibility, the digits data set, timing, tables.

Not part of the package: each example adds its own folder to ``sys.path``
(Python does that for a script) and imports these.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_convzoo.profile.timing import times_ms  # noqa: E402
from keras_convzoo.testing.digits import load_digits_images  # noqa: E402,F401


DEFAULT_TF_THREADS = 2


def add_reproducibility_args(parser, seed=True):
    """Adds ``--seed`` (unless ``seed=False``) and ``--tf-threads`` to an example's parser."""
    if seed:
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of everything random: initial weights, split, shuffling, augmentation")
    parser.add_argument("--tf-threads", type=int, default=DEFAULT_TF_THREADS,
                        help=f"TensorFlow intra-op threads (default {DEFAULT_TF_THREADS}, the documented figures' "
                             "setting; a CPU op's result depends on how many threads share it; 0: one per core)")


def make_reproducible(seed, tf_threads=DEFAULT_TF_THREADS):
    """Seeds every random number generator and makes TensorFlow's ops deterministic.

    Call it first in ``main``. ``keras.utils.set_random_seed`` seeds Python's
    ``random`` (Keras draws the seeds of initializers and layers created
    without one from it, in construction order), NumPy's global generator,
    TensorFlow's global seed and Keras' global ``SeedGenerator``.
    ``tf.config.experimental.enable_op_determinism`` makes every op and the
    ``tf.data`` pipelines deterministic. A CPU op's result still depends on
    the number of threads
    it is split over (the order of its sums), so the intra-op thread count is
    fixed too; inter-op threads only schedule independent ops and do not
    change results. Two runs on the same CPU and software with the same
    arguments then print identical figures.

    Args:
        seed: int seed.
        tf_threads: TensorFlow intra-op threads; 0 keeps TensorFlow's default
            (one per core).

    Returns:
        A one-line description of the settings, for the example's log.
    """
    from keras_convzoo.backend import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if tf_threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
        except RuntimeError:  # TensorFlow already running in this process (e.g. main() called twice)
            current = tf.config.threading.get_intra_op_parallelism_threads()
            if current != tf_threads:
                print(f"note: TensorFlow already runs with {current or 'default'} intra-op threads, not "
                      f"{tf_threads}: figures may differ from the documented ones")
    threads = f"{tf_threads} TensorFlow thread(s)" if tf_threads else "TensorFlow's default threads"
    return f"seed {seed}, deterministic ops, {threads}"


def training_dataset(x, y, batch_size, seed):
    """``(x, y)`` batches, reshuffled every epoch in an order fixed by ``seed``.

    Replaces ``model.fit(x, y, shuffle=True)``, whose shuffle op takes its
    seed from a TensorFlow op counter: here the seed is explicit.
    """
    from keras_convzoo.backend import tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def cross_entropy(probabilities, labels):
    """Mean cross-entropy of ``(N, classes)`` probabilities against integer labels.

    A fine fingerprint of trained weights: the examples print it with their
    accuracy, so two runs with identical lines trained identical models.
    """
    probabilities = np.asarray(probabilities, "float64")
    picked = probabilities[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


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
