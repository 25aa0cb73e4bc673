"""Small helpers shared by the examples: the digits data set, timing, tables.

Not part of the package: each example adds its own folder to ``sys.path``
(Python does that for a script) and imports these.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_convzoo.profile.benchmark import times_ms  # noqa: E402
from keras_convzoo.testing.digits import load_digits_images  # noqa: E402,F401


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
