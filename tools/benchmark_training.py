"""One training step, ours against keras.applications and timm (PyTorch), same machine, threads, batch and inputs.

A step is forward, backward and the optimizer's update on one batch with a
sparse categorical cross-entropy over 1000 classes:

- ours: ``keras_convzoo.profile.training_step_call`` (``model.train_on_batch``,
  ``jit_compile=False``: Keras' ``"auto"`` leaves XLA off on CPU, where it is
  slower), unfused, random weights, logits (``profile.benchmark_training`` and
  ``convzoo benchmark --train`` time the same step);
- keras.applications: the nearest model (ResNet50 for ResNeXt50, none for
  SE-ResNet50, MobileNetV2, ConvNeXtTiny without its preprocessing) through
  the same function;
- timm: ``model.train()``, ``optimizer.zero_grad(set_to_none=True)``,
  ``cross_entropy(model(x), y).backward()``, ``optimizer.step()`` in a
  PyTorch server process per mode under ``--torch-python`` (torch is never
  imported here; ``benchmark_vs_anchors.TimmServer``), eager NCHW and
  ``channels_last``, the same thread count; ``bfloat16`` under
  ``torch.autocast("cpu", torch.bfloat16)``.

Optimizers: SGD (learning rate 0.01, momentum 0.9) and AdamW (1e-3), the same
on both sides. ``--precision mixed_bfloat16`` builds the Keras models under
that policy and runs timm under autocast (AVX-512 BF16 / AMX CPUs). Each
side: ``--warmup`` untimed steps, then ``--repeats`` steps taken in
``--rounds`` alternating rounds (``profile.interleaved_times``; the PyTorch
servers wait idle on their stdin while TensorFlow runs), so a slow spell of
the shared machine falls on every side alike: timed one after the other, the
ratio of one unchanged pair swung from 0.88 to 1.19 between runs. The machine
is named, with its load average at the start and end. Ratio = ours / anchor
(< 1: ours faster).

Usage:
    python tools/benchmark_training.py --torch-python .venv/bin/python --batch-sizes 8 --size 128
    python tools/benchmark_training.py --models mobilenetv2_100 --optimizers sgd adamw --precision mixed_bfloat16
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from benchmark_vs_anchors import (  # noqa: E402
    PAIRS,
    TORCH_CREATE_MODEL,
    TimmServer,
    cpu_model,
    keras_application,
    torch_versions,
)

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import dtype_policy_scope, keras, tf  # noqa: E402
from keras_convzoo.profile import interleaved_times, onednn_enabled, training_step_call  # noqa: E402
from keras_convzoo.profile.modes import default_threads  # noqa: E402
from keras_convzoo.profile.training import OPTIMIZERS, PRECISIONS  # noqa: E402

TORCH_MODES = ("eager", "channels_last")

TORCH_SCRIPT = TORCH_CREATE_MODEL + textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import torch
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["threads"])

    def training_step(request):
        torch.manual_seed(0)
        model = create_model(request["model"], num_classes=1000).train()
        x = torch.from_numpy(np.load(request["input"])).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(np.load(request["labels"])).long()
        if request["mode"] == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        elif request["mode"] != "eager":
            raise ValueError("unknown torch mode " + request["mode"])
        if request["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=request["bfloat16"]):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return float(loss)

        return step

    # one request per stdin line: prepare a training step, then time it n times (TimmServer's protocol)
    step = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "prepare":
                step = None  # the previous model's memory goes first
                step = training_step(request)
                reply = {"ok": True}
            elif request["cmd"] == "time":
                times = []
                for _ in range(request["n"]):
                    start = time.perf_counter(); step(); times.append(1e3 * (time.perf_counter() - start))
                reply = {"times": times}
            else:
                break
        except Exception as error:
            reply = {"error": type(error).__name__ + ": " + str(error).splitlines()[0]}
        print(json.dumps(reply), flush=True)
    """
)


def _anchor(name, size, precision):
    """keras.applications' nearest model (softmax head, as users get it) built under ``precision``, or None."""
    anchor = PAIRS[name][0]
    if anchor is None:
        return None
    with dtype_policy_scope(precision):
        return keras_application(anchor, size)


def _ours(name, size, precision):
    """Our registered variant at ``size`` with random weights and logits, built under ``precision``."""
    with dtype_policy_scope(precision):
        return kcz.create_model(name, input_shape=(size, size, 3), weights=None, classifier_activation=None)


def time_steps(calls, warmup, repeats, rounds):
    """Medians and IQRs (ms) of ``calls`` (``{label: call or TimmServer}``) timed in alternating rounds.

    Each call gets ``warmup`` untimed steps, then ``profile.interleaved_times``
    gives every call one share of its ``repeats`` steps per round, so a slow
    spell of the shared machine falls on every side alike.

    Returns:
        ``{label: {"median_ms", "iqr_ms", "times"}}`` or ``{label: {"error"}}``.
    """
    times = interleaved_times(calls, warmup=warmup, repeats=repeats, rounds=rounds)
    out = {}
    for label, value in times.items():
        if isinstance(value, BaseException):
            out[label] = {"error": f"{type(value).__name__}: {str(value).splitlines()[0] if str(value) else ''}"}
        else:
            q25, q50, q75 = np.percentile(value, [25, 50, 75])
            out[label] = {"median_ms": float(q50), "iqr_ms": float(q75 - q25), "times": list(value)}
    return out


def report_head(title, tool, argv, threads, torch_python, runtimes=()):
    """The first lines of a tool's Markdown report: title, command, CPU, threads and versions.

    ``torch_python``: the PyTorch side's Python (its torch and timm versions
    are named), or None (no PyTorch side: not named). ``runtimes``: more
    ``"name version"`` strings to name (e.g. the LiteRT interpreter's).
    """
    onednn = onednn_enabled()
    state = "" if onednn is None else f" (oneDNN {'on' if onednn else 'off'})"
    versions = [f"TensorFlow {tf.__version__}{state}", f"Keras {keras.__version__}"]
    if torch_python:
        torch_v, timm_v, vision_v = torch_versions(torch_python)
        versions += [f"torch {torch_v}", f"timm {timm_v}", f"torchvision {vision_v}"]
    versions += [*runtimes, f"Python {platform.python_version()}"]
    return [
        f"# {title}", "",
        f"Generated by `python tools/{tool} {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {datetime.date.today().isoformat()}.", "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, {threads} threads on every side",
        f"- {', '.join(versions)}; keras_convzoo {kcz.__version__}",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--optimizers", nargs="+", default=["sgd"], choices=list(OPTIMIZERS))
    parser.add_argument("--precision", default="float32", choices=[p for p in PRECISIONS if p != "mixed_float16"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (each side gets repeats/rounds steps "
                        "per round)")
    parser.add_argument("--torch-python", help="a Python with torch and timm for the paired PyTorch process")
    parser.add_argument("--out", help="write the report as Markdown")
    parser.add_argument("--json", help="write the raw medians (ms, unrounded) as JSON: "
                        "[{model, optimizer, batch, medians: {side: ms}}]")
    args = parser.parse_args(argv)
    threads = default_threads()
    load_start = os.getloadavg()[0]
    print(f"training step, {args.size}x{args.size}, batches {args.batch_sizes}, {args.precision}, {threads} threads, "
          f"{args.rounds} alternating rounds, medians of {args.repeats} (ms); {cpu_model()}", flush=True)

    results = {}  # (name, optimizer, batch) -> {label: stats}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            for optimizer in args.optimizers:
                for b in args.batch_sizes:
                    x = rng.uniform(-1, 1, (b, args.size, args.size, 3)).astype("float32")
                    y = rng.integers(0, 1000, b)
                    x_path, y_path = os.path.join(folder, "x.npy"), os.path.join(folder, "y.npy")
                    np.save(x_path, x)
                    np.save(y_path, y)
                    calls, servers = {}, []
                    try:
                        calls["ours"] = training_step_call(_ours(name, args.size, args.precision), x, y, optimizer)
                        anchor = _anchor(name, args.size, args.precision)
                        if anchor is not None:
                            calls["keras"] = training_step_call(anchor, x, y, optimizer)
                        if args.torch_python:
                            for mode in TORCH_MODES:
                                server = TimmServer(args.torch_python, threads, script=TORCH_SCRIPT)
                                servers.append(server)
                                calls[f"timm {mode}"] = server.prepare(
                                    PAIRS[name][1], mode, x_path, labels=y_path, optimizer=optimizer,
                                    bfloat16=args.precision == "mixed_bfloat16")
                        stats = time_steps(calls, args.warmup, args.repeats, args.rounds)
                    finally:
                        for server in servers:
                            server.close()
                    results[(name, optimizer, b)] = stats
                    print(f"  {name:<18} {optimizer:<6} batch {b:<3} " + "  ".join(
                        f"{label} {s['median_ms']:.1f}" if "median_ms" in s else f"{label} failed: {s['error']}"
                        for label, s in stats.items()), flush=True)
                    calls.clear()
                    keras.backend.clear_session()

    header = "| model | optimizer | batch | ours ms | keras.applications ms | ratio | timm ms (best mode) | ratio |"
    lines = [header, "|" + "---|" * 8]
    for name in args.models:
        for optimizer in args.optimizers:
            for b in args.batch_sizes:
                stats = results[(name, optimizer, b)]
                mine, theirs = stats["ours"].get("median_ms"), stats.get("keras", {}).get("median_ms")
                timm_done = [(s["median_ms"], label.split()[1]) for label, s in stats.items()
                             if label.startswith("timm") and "median_ms" in s]
                timm_best = min(timm_done) if timm_done else None
                k_cell = f"{PAIRS[name][0]} {theirs:.0f}" if theirs else "-"
                k_ratio = f"{mine / theirs:.2f}" if mine and theirs else "-"
                t_cell = f"{timm_best[0]:.0f} ({timm_best[1]})" if timm_best else "-"
                t_ratio = f"{mine / timm_best[0]:.2f}" if mine and timm_best else "-"
                lines.append(f"| {name} | {optimizer} | {b} | {f'{mine:.0f}' if mine else 'failed'} | {k_cell} | "
                             f"{k_ratio} | {t_cell} | {t_ratio} |")
    if args.json:
        rows = [{"model": name, "optimizer": optimizer, "batch": b,
                 "medians": {label: s["median_ms"] for label, s in stats.items() if "median_ms" in s}}
                for (name, optimizer, b), stats in results.items()]
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\nratio = ours / anchor (< 1: ours faster)")
    print("\n".join(lines), flush=True)
    load_end = os.getloadavg()[0]
    if args.out:
        text = [
            *report_head("Training step: ours vs keras.applications vs timm", "benchmark_training.py", argv, threads,
                         args.torch_python),
            f"- {args.size}x{args.size}, {args.precision}, {args.warmup} warm-up steps, median of {args.repeats} "
            f"steps taken in {args.rounds} alternating rounds (ours, keras.applications, timm eager, timm "
            "channels_last; timm in PyTorch server processes that wait idle while TensorFlow runs); "
            f"1-minute load average {load_start:.2f} at the start, {load_end:.2f} at the end", "",
            *lines, "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(text))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
