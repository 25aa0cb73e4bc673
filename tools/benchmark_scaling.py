"""Scaling curves: inference and training time over batch size and input size, ours against timm, same run.

For each model (``benchmark_vs_anchors.PAIRS``) the tool times

- inference: ours fused, in ``--mode`` (default ``onnxruntime``: our ONNX
  file in onnxruntime, ``profile.mode_call``), against timm in eval mode
  (``channels_last`` eager, under ``torch.inference_mode``), over
  ``--batch-sizes`` at ``--batch-size-input`` px and over ``--sizes`` at
  batch 1;
- training: one SGD step (``profile.training_step_call``, unfused) against
  timm's (``benchmark_training``'s server) over ``--train-batch-sizes`` at
  ``--train-size`` px and over ``--train-sizes`` at batch
  ``--train-batch``;

each point in ``--rounds`` alternating rounds (``profile.interleaved_times``;
timm in a PyTorch server process that waits idle while TensorFlow runs). It
prints, per curve, the time, the time per image and per megapixel relative
to the curve's first point (1.00 = cost linear in batch and pixels), and the
ratio ours / timm. A point whose normalised cost exceeds ``--cliff`` times the
lowest of the curve's earlier points is marked ``CLIFF`` (retracing,
recompilation, memory).

Usage:
    python tools/benchmark_scaling.py --torch-python .venv/bin/python --out docs/benchmarks/scaling.md
    python tools/benchmark_scaling.py --models mobilenetv2_100 --sizes 128 224 --batch-sizes 1 8 --no-training
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from benchmark_training import TORCH_SCRIPT as TRAIN_SCRIPT  # noqa: E402
from benchmark_training import report_head, time_steps  # noqa: E402
from benchmark_vs_anchors import PAIRS, TimmServer, cpu_model  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras  # noqa: E402
from keras_convzoo.profile import training_step_call  # noqa: E402
from keras_convzoo.profile.modes import FILE_MODES, MODES, default_threads, mode_source, source_call  # noqa: E402


def _inputs(folder, batch, size, seed=0):
    """Seeded inputs in [-1, 1] and labels, saved for the PyTorch side: ``(x, y, x_path, y_path)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, batch)
    x_path, y_path = os.path.join(folder, f"x{batch}_{size}.npy"), os.path.join(folder, f"y{batch}_{size}.npy")
    np.save(x_path, x)
    np.save(y_path, y)
    return x, y, x_path, y_path


def normalised(points):
    """Cost per image-megapixel of each ``(batch, size, ms)`` relative to the first point's (1.0 = linear)."""
    per = [ms / (batch * size * size / 1e6) for batch, size, ms in points]
    return [p / per[0] for p in per]


def cliffs(points, factor):
    """Indices of ``points`` whose normalised cost exceeds ``factor`` times the lowest one of the smaller points before it.

    Along a curve of growing batch or size the cost per image-megapixel
    should stay flat or fall (fixed costs spread out); a rise by ``factor``
    is a cliff (retracing, recompilation, memory).
    """
    values = normalised(points)
    return [i for i in range(1, len(values)) if values[i] > factor * min(values[:i])]


def inference_curve(name, points, args, threads, folder, server):
    """``[(batch, size, ours_ms, timm_ms)]`` for inference at ``points`` ``[(batch, size)]``."""
    rows, sources = [], {}
    for batch, size in points:
        x, _, x_path, _ = _inputs(folder, batch, size)
        if size not in sources:
            model = kcz.deploy.fuse(kcz.create_model(name, input_shape=(size, size, 3), weights=None,
                                                     classifier_activation=None))
            sources[size] = mode_source(model, (size, size, 3), args.mode)
            if args.mode in FILE_MODES:
                del model
                keras.backend.clear_session()
        call, _ = source_call(args.mode, sources[size], x, threads)
        calls = {"ours": call}
        if server is not None:
            calls["timm"] = server.prepare(PAIRS[name][1], "channels_last", x_path)
        stats = time_steps(calls, args.warmup, args.repeats, args.rounds)
        rows.append((batch, size, stats["ours"].get("median_ms"), stats.get("timm", {}).get("median_ms")))
        _print_point("inference", name, batch, size, rows[-1])
    return rows


def training_curve(name, points, args, threads, folder):
    """``[(batch, size, ours_ms, timm_ms)]`` for one SGD step at ``points`` ``[(batch, size)]``."""
    rows = []
    for batch, size in points:
        x, y, x_path, y_path = _inputs(folder, batch, size)
        model = kcz.create_model(name, input_shape=(size, size, 3), weights=None, classifier_activation=None)
        calls, server = {"ours": training_step_call(model, x, y, "sgd")}, None
        try:
            if args.torch_python:
                server = TimmServer(args.torch_python, threads, script=TRAIN_SCRIPT)
                calls["timm"] = server.prepare(PAIRS[name][1], "channels_last", x_path, labels=y_path,
                                               optimizer="sgd", bfloat16=False)
            stats = time_steps(calls, args.train_warmup, args.train_repeats, args.rounds)
        finally:
            if server is not None:
                server.close()
        rows.append((batch, size, stats["ours"].get("median_ms"), stats.get("timm", {}).get("median_ms")))
        _print_point("training", name, batch, size, rows[-1])
        del model, calls
        keras.backend.clear_session()
    return rows


def _print_point(kind, name, batch, size, row):
    ours, timm = row[2], row[3]
    ratio = f"  ratio {ours / timm:.2f}" if ours and timm else ""
    print(f"  {kind:<9} {name:<18} batch {batch:<3} {size}px  ours {ours or float('nan'):9.1f} ms  "
          f"timm {timm or float('nan'):9.1f} ms{ratio}", flush=True)


def curve_table(title, rows, factor):
    """Markdown table of one curve: ms, normalised cost per image-megapixel (ours, timm), ratio, cliffs."""
    ours_points = [(b, s, o) for b, s, o, _ in rows if o]
    timm_points = [(b, s, t) for b, s, _, t in rows if t]
    ours_norm = dict(zip([(b, s) for b, s, _ in ours_points], normalised(ours_points))) if ours_points else {}
    timm_norm = dict(zip([(b, s) for b, s, _ in timm_points], normalised(timm_points))) if timm_points else {}
    marked = {(ours_points[i][0], ours_points[i][1]) for i in cliffs(ours_points, factor)} if ours_points else set()
    lines = [f"**{title}**", "",
             "| batch | px | ours ms | timm ms | ratio | ours per image-Mpx (rel.) | timm per image-Mpx (rel.) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for b, s, o, t in rows:
        cell = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        flag = " CLIFF" if (b, s) in marked else ""
        lines.append(f"| {b} | {s} | {cell(o)} | {cell(t)} | {f'{o / t:.2f}' if o and t else '-'} | "
                     f"{ours_norm.get((b, s), float('nan')):.2f}{flag} | {timm_norm.get((b, s), float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnext50_32x4d", "mobilenetv2_100", "convnext_tiny"],
                        choices=list(PAIRS))
    parser.add_argument("--mode", default="onnxruntime", choices=MODES, help="our inference mode (default onnxruntime)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--batch-size-input", type=int, default=224, help="input side of the batch curve")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 224, 320, 512], help="input sides at batch 1")
    parser.add_argument("--train-batch-sizes", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--train-size", type=int, default=128, help="input side of the training batch curve")
    parser.add_argument("--train-sizes", nargs="+", type=int, default=[128, 224])
    parser.add_argument("--train-batch", type=int, default=8, help="batch of the training size curve")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-warmup", type=int, default=1)
    parser.add_argument("--train-repeats", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cliff", type=float, default=1.5,
                        help="mark points whose cost per image-megapixel exceeds this times the lowest earlier one")
    parser.add_argument("--torch-python", help="a Python with torch and timm (default: no timm side)")
    parser.add_argument("--out", help="write the report as Markdown")
    args = parser.parse_args(argv)
    threads = default_threads()
    load_start = os.getloadavg()[0]
    print(f"scaling curves, {args.mode} / timm channels_last, {threads} threads; {cpu_model()}", flush=True)
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            server = TimmServer(args.torch_python, threads) if args.torch_python else None
            try:
                by_batch = inference_curve(name, [(b, args.batch_size_input) for b in args.batch_sizes], args,
                                           threads, folder, server)
                by_size = inference_curve(name, [(1, s) for s in args.sizes], args, threads, folder, server)
            finally:
                if server is not None:
                    server.close()
            sections.append(f"### {name}\n")
            sections.append(curve_table(f"Inference over batch ({args.batch_size_input} px)", by_batch, args.cliff))
            sections.append(curve_table("Inference over input size (batch 1)", by_size, args.cliff))
            if not args.no_training:
                t_batch = training_curve(name, [(b, args.train_size) for b in args.train_batch_sizes], args,
                                         threads, folder)
                t_size = training_curve(name, [(args.train_batch, s) for s in args.train_sizes], args, threads,
                                        folder)
                sections.append(curve_table(f"SGD training step over batch ({args.train_size} px)", t_batch,
                                            args.cliff))
                sections.append(curve_table(f"SGD training step over input size (batch {args.train_batch})", t_size,
                                            args.cliff))
    report = "\n".join(sections)
    print()
    print(report)
    if args.out:
        head = [
            *report_head("Scaling: time over batch and input size", "benchmark_scaling.py", argv, threads,
                         args.torch_python),
            f"- ours: inference fused in `{args.mode}`, training unfused `train_on_batch` (SGD, momentum 0.9); timm "
            "channels_last eager (inference under `torch.inference_mode`); each point timed in "
            f"{args.rounds} alternating rounds; medians of {args.repeats} calls / {args.train_repeats} steps",
            "- per image-Mpx (rel.): time per image and per megapixel relative to the curve's first point "
            f"(1.00: cost linear in batch and pixels; below 1: larger batches or images use the cores better); "
            f"CLIFF marks a point above {args.cliff:g}x the lowest earlier point of its curve",
            f"- 1-minute load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(head) + "\n" + report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
