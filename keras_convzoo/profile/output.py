"""Reports of ``BenchmarkResult`` rows: a text table, a CSV file, a latency-against-MACs plot."""

import csv

from keras_convzoo.profile.modes import MODES

#: Columns of ``write_csv``: the ``BenchmarkResult`` fields and ``images_per_s``.
CSV_FIELDS = ("model", "mode", "batch_size", "input_shape", "median_ms", "iqr_ms", "min_ms", "repeats",
              "images_per_s", "macs", "error", "note")


def format_table(rows):
    """Text table of ``rows``: model, mode, batch, median, IQR, images/s, MACs.

    Args:
        rows: ``BenchmarkResult`` rows; a failed row shows its ``error``.

    Returns:
        The table as one string: a header line, then a line per row.

    Example:
    >>> print(format_table(benchmark("mobilenetv2_100", batch_sizes=(1,), modes=("graph",))))
    """
    from keras_convzoo.profile.flops import format_macs

    header = f"{'model':<22}{'mode':<13}{'batch':>5}{'median ms':>11}{'IQR ms':>9}{'img/s':>9}{'MACs':>9}"
    lines = [header]
    for r in rows:
        macs = format_macs(r.macs) if r.macs else "-"
        if r.ok:
            lines.append(
                f"{r.model:<22}{r.mode:<13}{r.batch_size:>5}{r.median_ms:>11.2f}{r.iqr_ms:>9.2f}"
                f"{r.images_per_s:>9.1f}{macs:>9}" + (f"  ({r.note})" if r.note else "")
            )
        else:
            lines.append(f"{r.model:<22}{r.mode:<13}{r.batch_size:>5}  failed: {r.error}")
    return "\n".join(lines)


def write_csv(rows, path):
    """Writes ``rows`` to a CSV file with the columns of ``CSV_FIELDS``.

    Args:
        rows: ``BenchmarkResult`` rows.
        path: the ``.csv`` file (overwritten); a missing value is an empty cell.

    Example:
    >>> write_csv(benchmark("mobilenetv2_100", batch_sizes=(1,), modes=("graph",)), "latency.csv")
    """
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items() if k in CSV_FIELDS})


def plot_latency_vs_macs(rows, path, title=None):
    """Saves a PNG: median latency per input (log scale) against MACs, one point per (model, mode) per batch size.

    Needs matplotlib (``pip install keras_convzoo[all]``). Failed rows are left out.

    Args:
        rows: ``BenchmarkResult`` rows (with ``macs``).
        path: the ``.png`` file.
        title: figure title.

    Returns:
        The path.

    Raises:
        ValueError: when no row ran and has MACs.

    Example:
    >>> plot_latency_vs_macs(benchmark("mobilenetv2_100", fuse=True), "latency.png", title="MobileNetV2")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if r.ok and r.macs]
    if not usable:
        raise ValueError("No successful row with MACs to plot.")
    batches = sorted({r.batch_size for r in usable})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.5), squeeze=False)
    markers = dict(zip(MODES, "osD^v"))
    for ax, batch in zip(axes[0], batches):
        for mode in MODES:
            points = [r for r in usable if r.batch_size == batch and r.mode == mode]
            if not points:
                continue
            ax.scatter([r.macs / 1e9 for r in points], [r.median_ms / batch for r in points],
                       marker=markers.get(mode, "o"), label=mode)
        for model in dict.fromkeys(r.model for r in usable if r.batch_size == batch):
            best = min((r for r in usable if r.batch_size == batch and r.model == model), key=lambda r: r.median_ms)
            ax.annotate(model, (best.macs / 1e9, best.median_ms / batch), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("GMACs per input")
        ax.set_ylabel("median latency per input (ms)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
