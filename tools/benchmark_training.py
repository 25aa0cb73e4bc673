"""One training step, ours against keras.applications and timm (PyTorch), same machine, threads, batch and inputs.

A step is forward, backward and the optimizer's update on one batch with a
sparse categorical cross-entropy over 1000 classes:

- ours: ``keras_convzoo.profile.benchmark_training`` (``model.train_on_batch``,
  ``jit_compile=False``: Keras' ``"auto"`` leaves XLA off on CPU, where it is
  slower), unfused, random weights, logits;
- keras.applications: the nearest model (ResNet50 for ResNeXt50, none for
  SE-ResNet50, MobileNetV2, ConvNeXtTiny without its preprocessing) through
  the same function;
- timm: ``model.train()``, ``optimizer.zero_grad(set_to_none=True)``,
  ``cross_entropy(model(x), y).backward()``, ``optimizer.step()`` in a paired
  process under ``--torch-python`` (torch is never imported here), eager
  NCHW and ``channels_last``, the same thread count; ``bfloat16`` under
  ``torch.autocast("cpu", torch.bfloat16)``.

Optimizers: SGD (learning rate 0.01, momentum 0.9) and AdamW (1e-3), the same
on both sides. ``--precision mixed_bfloat16`` builds the Keras models under
that policy and runs timm under autocast (AVX-512 BF16 / AMX CPUs). Each
side: ``--warmup`` untimed steps, then the median of ``--repeats``; the
sides run one after the other (the machine is named, with its load average
at the start and end). Ratio = ours / anchor (< 1: ours faster).

Usage:
    python tools/benchmark_training.py --torch-python .venv/bin/python --batch-sizes 8 --size 128
    python tools/benchmark_training.py --models mobilenetv2_100 --optimizers sgd adamw --precision mixed_bfloat16
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from benchmark_vs_anchors import PAIRS, cpu_model, keras_application, torch_versions  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import dtype_policy_scope, keras, tf  # noqa: E402
from keras_convzoo.profile import benchmark_training  # noqa: E402
from keras_convzoo.profile.modes import default_threads  # noqa: E402
from keras_convzoo.profile.training import OPTIMIZERS, PRECISIONS  # noqa: E402

TORCH_MODES = ("eager", "channels_last")

TORCH_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import torch, timm
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["threads"])
    result = {}
    for name in job["models"]:
        result[name] = {}
        for batch, path in job["inputs"].items():
            x0 = torch.from_numpy(np.load(path)).permute(0, 3, 1, 2).contiguous()
            y = torch.from_numpy(np.load(path.replace(".npy", "_labels.npy"))).long()
            for mode in job["modes"]:
                for optimizer_name in job["optimizers"]:
                    key = f"{mode} {optimizer_name} {batch}"
                    try:
                        torch.manual_seed(0)
                        model = timm.create_model(name, pretrained=False, num_classes=1000).train()
                        x = x0
                        if mode == "channels_last":
                            model = model.to(memory_format=torch.channels_last)
                            x = x0.to(memory_format=torch.channels_last)
                        if optimizer_name == "sgd":
                            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                        else:
                            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

                        def step():
                            optimizer.zero_grad(set_to_none=True)
                            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=job["bfloat16"]):
                                loss = torch.nn.functional.cross_entropy(model(x), y)
                            loss.backward()
                            optimizer.step()
                            return float(loss)

                        for _ in range(job["warmup"]):
                            step()
                        times = []
                        for _ in range(job["repeats"]):
                            start = time.perf_counter(); step(); times.append(1e3 * (time.perf_counter() - start))
                        q25, q50, q75 = np.percentile(times, [25, 50, 75])
                        result[name][key] = {"median_ms": float(q50), "iqr_ms": float(q75 - q25)}
                    except Exception as error:
                        result[name][key] = {"error": type(error).__name__ + ": " + str(error).splitlines()[0]}
    print(json.dumps(result))
    """
)


def _anchor(name, size, precision):
    """keras.applications' nearest model (softmax head, as users get it) built under ``precision``, or None."""
    anchor = PAIRS[name][0]
    if anchor is None:
        return None
    with dtype_policy_scope(precision):
        return keras_application(anchor, size)


def _run_torch(args, threads, folder):
    rng = np.random.default_rng(0)
    paths = {}
    for b in args.batch_sizes:
        paths[str(b)] = os.path.join(folder, f"x{b}.npy")
        np.save(paths[str(b)], rng.uniform(-1, 1, (b, args.size, args.size, 3)).astype("float32"))
        np.save(paths[str(b)].replace(".npy", "_labels.npy"), rng.integers(0, 1000, b))
    job = dict(threads=threads, models=[PAIRS[m][1] for m in args.models], inputs=paths, modes=list(TORCH_MODES),
               optimizers=list(args.optimizers), warmup=args.warmup, repeats=args.repeats,
               bfloat16=args.precision == "mixed_bfloat16")
    out = subprocess.run([args.torch_python, "-c", TORCH_SCRIPT, json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the PyTorch process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--optimizers", nargs="+", default=["sgd"], choices=list(OPTIMIZERS))
    parser.add_argument("--precision", default="float32", choices=[p for p in PRECISIONS if p != "mixed_float16"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-python", help="a Python with torch and timm for the paired PyTorch process")
    parser.add_argument("--out", help="write the report as Markdown")
    args = parser.parse_args(argv)
    threads = default_threads()
    load_start = os.getloadavg()[0]
    print(f"training step, {args.size}x{args.size}, batches {args.batch_sizes}, {args.precision}, {threads} threads, "
          f"medians of {args.repeats} (ms); {cpu_model()}", flush=True)

    ours, anchors = {}, {}
    for name in args.models:
        ours[name] = {}
        for row in benchmark_training(name, batch_sizes=args.batch_sizes, input_size=args.size,
                                      optimizers=args.optimizers, precision=args.precision, warmup=args.warmup,
                                      repeats=args.repeats):
            ours[name][f"{row.mode.split('_')[1]} {row.batch_size}"] = row
            print(f"  {name:<18} ours   {row.mode:<28} batch {row.batch_size}: "
                  + (f"{row.median_ms:8.1f} ms" if row.ok else f"failed: {row.error}"), flush=True)
        keras.backend.clear_session()
        anchor = _anchor(name, args.size, args.precision)
        if anchor is not None:
            rows = benchmark_training(anchor, batch_sizes=args.batch_sizes, input_size=None,
                                      optimizers=args.optimizers, warmup=args.warmup, repeats=args.repeats)
            anchors[name] = {f"{r.mode.split('_')[1]} {r.batch_size}": r for r in rows}
            for row in rows:
                print(f"  {name:<18} keras  {PAIRS[name][0] + ' ' + row.mode:<28} batch {row.batch_size}: "
                      + (f"{row.median_ms:8.1f} ms" if row.ok else f"failed: {row.error}"), flush=True)
            keras.backend.clear_session()

    torch_result = {}
    if args.torch_python:
        with tempfile.TemporaryDirectory() as folder:
            torch_result = _run_torch(args, threads, folder)

    header = "| model | optimizer | batch | ours ms | keras.applications ms | ratio | timm ms (best mode) | ratio |"
    lines = [header, "|" + "---|" * 8]
    for name in args.models:
        for optimizer in args.optimizers:
            for b in args.batch_sizes:
                key = f"{optimizer} {b}"
                mine = ours[name][key]
                theirs = anchors.get(name, {}).get(key)
                timm_rows = {m: torch_result.get(PAIRS[name][1], {}).get(f"{m} {optimizer} {b}", {})
                             for m in TORCH_MODES}
                timm_done = [(r["median_ms"], m) for m, r in timm_rows.items() if "median_ms" in r]
                timm_best = min(timm_done) if timm_done else None
                ms = mine.median_ms if mine.ok else None
                k_cell = f"{PAIRS[name][0]} {theirs.median_ms:.0f}" if theirs is not None and theirs.ok else "-"
                k_ratio = f"{ms / theirs.median_ms:.2f}" if ms and theirs is not None and theirs.ok else "-"
                t_cell = f"{timm_best[0]:.0f} ({timm_best[1]})" if timm_best else "-"
                t_ratio = f"{ms / timm_best[0]:.2f}" if ms and timm_best else "-"
                lines.append(f"| {name} | {optimizer} | {b} | {f'{ms:.0f}' if ms else 'failed'} | {k_cell} | "
                             f"{k_ratio} | {t_cell} | {t_ratio} |")
    print("\nratio = ours / anchor (< 1: ours faster)")
    print("\n".join(lines), flush=True)
    load_end = os.getloadavg()[0]
    if args.out:
        torch_v, timm_v = torch_versions(args.torch_python) if args.torch_python else ("-", "-")
        text = [
            "# Training step: ours vs keras.applications vs timm", "",
            f"Generated by `python tools/benchmark_training.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
            f" on {datetime.date.today().isoformat()}.", "",
            f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, {threads} threads on every side",
            f"- TensorFlow {tf.__version__}, Keras {keras.__version__}, torch {torch_v}, timm {timm_v}, "
            f"Python {platform.python_version()}; keras_convzoo {kcz.__version__}",
            f"- {args.size}x{args.size}, {args.precision}, {args.warmup} warm-up steps, median of {args.repeats}; "
            f"1-minute load average {load_start:.2f} at the start, {load_end:.2f} at the end", "",
            *lines, "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(text))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
