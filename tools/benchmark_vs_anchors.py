"""Our models (fused, best mode) against keras.applications and timm (PyTorch), same machine, threads and inputs.

Pairs (ours: keras.applications anchor, timm anchor):

    resnext50_32x4d: ResNet50 (the nearest keras.applications has), resnext50_32x4d
    seresnet50:      -,                                             seresnet50
    mobilenetv2_100: MobileNetV2,                                   mobilenetv2_100
    convnext_tiny:   ConvNeXtTiny (include_preprocessing=False),    convnext_tiny
    shufflenet_v2_x1_0: -,                                          torchvision's shufflenet_v2_x1_0

timm has no ShuffleNetV2, so that family's PyTorch anchor is torchvision's
(the model our ShuffleNetV2 matches numerically, ``tools/check_shufflenet_torchvision.py``);
the tables still call the PyTorch side "timm". PyTorch names are timm's, or
``"torchvision:<name>"`` (``TORCH_CREATE_MODEL``, shared by every tool's PyTorch script).

TensorFlow side (this process): ``keras_convzoo.profile.compare`` times our
model in its fused inference form (``deploy.fuse``) and the keras.applications
model as users get it, in each of ``--modes`` (all of ``profile.MODES`` by
default: TensorFlow eager/graph/XLA, TFLite fp32/int8 files in LiteRT, the
ONNX file in onnxruntime; the keras.applications model goes through the same
exporters, so both sides run in their best shipped runtimes) at each batch size, on the same seeded inputs, in ``--rounds``
alternating rounds so that a slow spell of the machine falls on both sides
(``profile.benchmark`` for a model without a keras.applications anchor). The
ratio to keras.applications is printed for every mode (int8 against keras'
int8 file); the best-mode ratios use the float32 modes only, the arithmetic
of the anchors. PyTorch side (a paired
process under ``--torch-python``; torch is never imported here): timm's
model in eval mode under ``torch.inference_mode`` in each of ``--torch-modes``
(``eager`` NCHW, ``channels_last``, ``jit``: traced, frozen and
``optimize_for_inference``), same thread count, the same input arrays
(written to .npy files and transposed to NCHW there). Each side's best mode
is then re-timed with the others in ``--rounds`` alternating rounds
(``profile.interleaved_times``; timm's calls in a PyTorch server process
that waits idle while TensorFlow runs, timed there) and
``ratio = ours / anchor`` printed from those times (< 1: ours is faster).

Where a target (ratio <= 1.0) is missed, the time of each layer type is
measured on both sides at that batch (each layer timed alone on its real
input, graph mode for Keras; each leaf module for timm) and printed, so the
op that dominates the difference shows; a TFLite miss also lists the op
types of both files and whether they run the same op sequence. With ``--out`` the tables, the
breakdowns and the machine (CPU model, threads, versions, date) are written
as Markdown; ``--plot`` saves latency vs MACs.

Usage:
    python tools/benchmark_vs_anchors.py --torch-python /work/venv-torch/bin/python --out docs/benchmarks/anchors.md \
        --plot docs/benchmarks/benchmarks.png
    python tools/benchmark_vs_anchors.py --models mobilenetv2_100 --batch-sizes 1 --repeats 5   # quick look
"""

import argparse
import collections
import contextlib
import dataclasses
import datetime
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _timing import median_ms  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402
from keras_convzoo.profile import (  # noqa: E402
    MODES,
    benchmark,
    compare,
    count_flops,
    format_macs,
    interleaved_times,
    measure_peaks,
    mode_call,
    roofline_point,
)
from keras_convzoo.profile.modes import default_threads  # noqa: E402
from keras_convzoo.profile.output import plot_latency_vs_macs  # noqa: E402

PAIRS = {
    "resnext50_32x4d": ("ResNet50", "resnext50_32x4d"),
    "seresnet50": (None, "seresnet50"),
    "mobilenetv2_100": ("MobileNetV2", "mobilenetv2_100"),
    "convnext_tiny": ("ConvNeXtTiny", "convnext_tiny"),
    "shufflenet_v2_x1_0": (None, "torchvision:shufflenet_v2_x1_0"),
}
TF_MODES = MODES  # eager, graph, xla, tflite, tflite_int8, onnxruntime
# the modes "best" picks from: the anchors' arithmetic (float32), each a runtime a user can ship
FP32_MODES = ("eager", "graph", "xla", "tflite", "onnxruntime")
TORCH_MODES = ("eager", "channels_last", "jit")

#: The PyTorch scripts' model factory (the head of each tool's script): a timm name, or
#: ``"torchvision:<name>"`` for a family timm lacks; random weights either way.
TORCH_CREATE_MODEL = textwrap.dedent(
    """
    def create_model(name, **kwargs):
        if name.startswith("torchvision:"):
            import torchvision
            return getattr(torchvision.models, name.split(":", 1)[1])(weights=None, **kwargs)
        import timm
        return timm.create_model(name, pretrained=False, **kwargs)
    """
)

TORCH_SCRIPT = TORCH_CREATE_MODEL + textwrap.dedent(
    """
    import collections, json, sys, time
    import numpy as np
    import torch
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["threads"])

    def times_ms(fn, x, warmup, repeats):
        for _ in range(warmup):
            fn(x)
        out = []
        for _ in range(repeats):
            start = time.perf_counter(); fn(x); out.append(1e3 * (time.perf_counter() - start))
        return out

    def stats(times):
        q25, q50, q75 = np.percentile(times, [25, 50, 75])
        return {"median_ms": float(q50), "iqr_ms": float(q75 - q25)}

    def breakdown(model, x, repeats):
        inputs = {}
        leaves = [m for m in model.modules() if not list(m.children())]

        def keep(module, args, output):  # returns None: the output is left as it is
            inputs.setdefault(module, args)

        hooks = [m.register_forward_hook(keep) for m in leaves]
        model(x)
        for h in hooks:
            h.remove()
        per_type = collections.Counter()
        for module, args in inputs.items():
            per_type[type(module).__name__] += float(np.median(times_ms(lambda a: module(*a), args, 2, repeats)))
        return dict(per_type)

    def make_fn(model, mode, x):  # (module or traced function, input); channels_last converts the model in place
        model.to(memory_format=torch.contiguous_format)
        if mode == "eager":
            return model, x
        if mode == "channels_last":
            return model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        if mode == "jit":
            return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x))), x
        raise ValueError("unknown torch mode " + mode)

    def load(path):
        return torch.from_numpy(np.load(path)).permute(0, 3, 1, 2).contiguous()

    if job.get("serve"):  # one request per stdin line: prepare a (model, mode, input), then time it n times
        models, prepared = {}, None
        with torch.inference_mode():
            for line in sys.stdin:
                request = json.loads(line)
                try:
                    if request["cmd"] == "prepare":
                        if request["model"] not in models:
                            models[request["model"]] = create_model(request["model"]).eval()
                        prepared = make_fn(models[request["model"]], request["mode"], load(request["input"]))
                        reply = {"ok": True}
                    elif request["cmd"] == "time":
                        reply = {"times": times_ms(*prepared, 0, request["n"])}
                    else:
                        break
                except Exception as error:
                    reply = {"error": type(error).__name__ + ": " + str(error).splitlines()[0]}
                print(json.dumps(reply), flush=True)
        sys.exit(0)

    result = {}
    with torch.inference_mode():
        for name in job["models"]:
            model = create_model(name).eval()
            result[name] = {"params": sum(p.numel() for p in model.parameters()), "modes": {}, "breakdown": {}}
            for batch, path in job["inputs"].items():
                x = load(path)
                for mode in job["modes"]:
                    try:
                        fn, xm = make_fn(model, mode, x)
                        row = stats(times_ms(fn, xm, job["warmup"], job["repeats"]))
                    except Exception as error:
                        row = {"error": type(error).__name__ + ": " + str(error).splitlines()[0]}
                    finally:
                        model = model.to(memory_format=torch.contiguous_format)
                    result[name]["modes"].setdefault(batch, {})[mode] = row
                if int(batch) in job["breakdown"].get(name, []):
                    result[name]["breakdown"][batch] = breakdown(model, x, job["breakdown_repeats"])
    print(json.dumps(result))
    """
)


# ----------------------------------------------------------------- models
def keras_application(name, size):
    constructor = getattr(keras.applications, name)
    kwargs = dict(weights=None, input_shape=(size, size, 3))
    if name.startswith("ConvNeXt"):
        kwargs["include_preprocessing"] = False
    return constructor(**kwargs)


def ours(name, size):
    return kcz.deploy.fuse(kcz.create_model(name, input_shape=(size, size, 3)))


def same_inputs(batch_sizes, size):
    """The arrays ``profile.benchmark`` draws (seeded, in batch order), for the PyTorch side."""
    rng = np.random.default_rng(0)
    return {b: rng.uniform(-1.0, 1.0, (b, size, size, 3)).astype("float32") for b in batch_sizes}


def best(rows, batch):
    """``(median_ms, mode, iqr_ms)`` of the fastest float32 mode at ``batch``, or None."""
    done = [(r.median_ms, r.mode, r.iqr_ms) for r in rows if r.batch_size == batch and r.ok and r.mode in FP32_MODES]
    return min(done) if done else None


def again_best(times, previous):
    """``(median_ms, mode, iqr_ms)`` from the re-timed ``times``; ``previous`` when the re-timing failed."""
    if isinstance(times, Exception):
        print(f"  re-timing failed ({times}); keeping the sweep's time", flush=True)
        return previous
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return float(q50), previous[1], float(q75 - q25)


def best_torch(modes):
    done = [(m["median_ms"], mode, m["iqr_ms"]) for mode, m in modes.items() if "median_ms" in m]
    return min(done) if done else None


def per_type_ms(model, x, repeats):
    """Sum of per-layer graph-mode medians by layer class (each layer alone on its real input)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probes = keras.Model(model.inputs, [layer.input for layer in layers])
    totals = collections.Counter()
    for layer, value in zip(layers, probes(x, training=False)):
        if isinstance(value, (list, tuple)):
            fn = tf.function(lambda *t, layer=layer: layer(list(t), training=False))
            totals[type(layer).__name__] += median_ms(lambda v, fn=fn: fn(*v), value, 2, repeats)
        else:
            fn = tf.function(lambda t, layer=layer: layer(t, training=False))
            totals[type(layer).__name__] += median_ms(fn, value, 2, repeats)
    return dict(totals)


def tflite_ops(model, size, tflite_options=None):
    """The op names of the float32 TFLite file of ``model`` (``to_tflite`` options), in execution order."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        kcz.export.to_tflite(model, path, input_shape=(size, size, 3), verify=False, **(tflite_options or {}))
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            tf.lite.experimental.Analyzer.analyze(model_path=path)
    return [line.split()[1].split("(")[0] for line in text.getvalue().splitlines() if line.strip().startswith("Op#")]


class TimmServer:
    """A PyTorch process that keeps timm models and times one prepared (model, mode, input) on request.

    ``prepare(...)`` sets the call; ``time_ms(n)`` runs it ``n`` times there and
    returns the times measured there, so the server is a timer for
    ``profile.interleaved_times``: the process waits on its stdin between
    requests, so it takes no CPU while the TensorFlow side runs.
    """

    def __init__(self, python, threads, script=None):
        self.errors = tempfile.TemporaryFile(mode="w+")
        job = json.dumps({"serve": True, "threads": threads})
        self.process = subprocess.Popen([python, "-c", script or TORCH_SCRIPT, job], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.errors, text=True)

    def request(self, **message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.errors.seek(0)
                raise RuntimeError(f"the PyTorch server stopped:\n{self.errors.read()[-3000:]}")
            if line.startswith("{"):
                reply = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply

    def prepare(self, model, mode, input_path, **options):
        """Makes (timm ``model``, ``mode``, input) the call that ``time_ms`` times; returns the server.

        ``options`` go to the server's script with the request (the training
        server's optimizer, labels and precision).
        """
        self.request(cmd="prepare", model=model, mode=mode, input=input_path, **options)
        return self

    def time_ms(self, n):
        """``n`` times (ms) of the prepared call, measured in the PyTorch process."""
        return self.request(cmd="time", n=n)["times"]

    def close(self):
        try:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=60)
        self.errors.close()


def run_torch(args, threads, inputs, folder, breakdown):
    paths = {}
    for b, x in inputs.items():
        paths[str(b)] = os.path.join(folder, f"x{b}.npy")
        np.save(paths[str(b)], x)
    job = dict(
        threads=threads, models=[PAIRS[m][1] for m in args.models], inputs=paths, modes=list(args.torch_modes),
        warmup=args.warmup, repeats=args.repeats, breakdown=breakdown, breakdown_repeats=args.breakdown_repeats,
    )
    out = subprocess.run([args.torch_python, "-c", TORCH_SCRIPT, json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the PyTorch process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_versions(python):
    """``[torch, timm, torchvision]`` versions in the Python ``python`` ("?" each where it cannot say)."""
    code = "import torch, timm, torchvision; print(torch.__version__, timm.__version__, torchvision.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else ["?", "?", "?"]


#: /proc/cpuinfo flags that decide fp32 / int8 kernel speed, with the names printed.
SIMD_FLAGS = (
    ("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX-512 BF16"), ("amx_int8", "AMX-INT8"), ("amx_bf16", "AMX-BF16"),
    ("asimddp", "ARM dot product"),
)


def cpu_model():
    """The CPU's model name and the SIMD features that int8, bfloat16 and fp32 speed depend on."""
    name, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name is None:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    features = [label for flag, label in SIMD_FLAGS if flag in flags]
    return f"{name} ({', '.join(features)})" if features else name


# ---------------------------------------------------------------- reports
def fmt_best(entry):
    return "failed" if entry is None else f"{entry[0]:.1f} ({entry[1]})"


def fmt_ratio(a, b):
    return "-" if a is None or b is None else f"{a[0] / b[0]:.2f}"


def top(per_type, n=6):
    items = sorted(per_type.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.1f}" for k, v in items)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--modes", nargs="+", default=list(TF_MODES), help="TensorFlow-side modes")
    parser.add_argument("--torch-modes", nargs="+", default=list(TORCH_MODES), choices=list(TORCH_MODES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds: ours and keras.applications in every mode (profile.compare), then "
                             "the three sides' best modes together (1: no re-timing)")
    parser.add_argument("--breakdown-repeats", type=int, default=5, help="repeats per layer in the breakdowns")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-op profile of missed targets")
    parser.add_argument("--torch-python", help="a Python with torch and timm for the paired PyTorch process")
    parser.add_argument("--dense-group-channels", type=int, metavar="N",
                        help="our TFLite files: grouped convs of at most N input channels per group written as "
                             "dense block-diagonal convs (to_tflite dense_group_channels; faster int8 on VNNI/AMX "
                             "x86 CPUs); default: grouped")
    parser.add_argument("--out", help="write the report as Markdown (docs/benchmarks/anchors.md)")
    parser.add_argument("--plot", help="save latency vs MACs as a PNG")
    args = parser.parse_args(argv)
    threads = default_threads()
    load_start = os.getloadavg()[0]
    inputs = same_inputs(args.batch_sizes, args.size)
    lowering = {} if args.dense_group_channels is None else {"dense_group_channels": args.dense_group_channels}
    common = dict(batch_sizes=args.batch_sizes, input_size=None, modes=args.modes, warmup=args.warmup,
                  repeats=args.repeats, num_threads=threads, tflite_options=lowering)
    print(f"{args.size}x{args.size}, batches {args.batch_sizes}, {threads} threads, medians of {args.repeats} (ms)",
          flush=True)
    peaks = measure_peaks(num_threads=threads, repeats=args.repeats)  # the ceilings, measured in this run
    print(f"machine: {peaks}", flush=True)

    rows, macs, keras_rows, mac_counts = {}, {}, {}, {}
    built = {}  # name: (ours fused, keras.applications model or None), reused by the later phases
    for name in args.models:
        anchor = PAIRS[name][0]
        model, keras_model = built[name] = (ours(name, args.size),
                                            keras_application(anchor, args.size) if anchor else None)
        mac_counts[name] = count_flops(model)
        macs[name] = mac_counts[name].total
        if anchor:  # interleaved rounds: a slow spell of the machine falls on both sides alike
            timed = compare({f"{name} (ours)": model, f"keras {anchor}": keras_model}, rounds=args.rounds,
                            **common)
            rows[name] = [r for r in timed if r.model.endswith("(ours)")]
            keras_rows[name] = [r for r in timed if not r.model.endswith("(ours)")]
        else:
            rows[name] = [dataclasses.replace(r, model=f"{name} (ours)") for r in benchmark(model, **common)]
        for r in rows[name] + keras_rows.get(name, []):
            text = f"{r.median_ms:8.1f} ms  IQR {r.iqr_ms:5.1f} {r.note or ''}" if r.ok else f"failed: {r.error}"
            print(f"  {r.model:<24} {r.mode:<14} batch {r.batch_size}: {text}", flush=True)

    torch_result = {}
    if args.torch_python:
        with tempfile.TemporaryDirectory() as folder:
            torch_result = run_torch(args, threads, inputs, folder, breakdown={})
            for name in args.models:
                for b, modes in torch_result[PAIRS[name][1]]["modes"].items():
                    for mode, m in modes.items():
                        text = f"{m['median_ms']:8.1f} ms  IQR {m['iqr_ms']:5.1f}" if "median_ms" in m else m["error"]
                        print(f"  {'timm ' + PAIRS[name][1]:<24} {mode:<14} batch {b}: {text}", flush=True)

    # ratios, each side at its best mode; the three best modes re-timed together in alternating rounds
    table, missed = [], collections.defaultdict(list)
    server = TimmServer(args.torch_python, threads) if torch_result and args.rounds > 1 else None
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name in args.models:
                anchor, timm_name = PAIRS[name]
                models = built[name]
                for b in args.batch_sizes:
                    our_best = best(rows[name], b)
                    keras_best = best(keras_rows[name], b) if anchor else None
                    timm_best = best_torch(torch_result[timm_name]["modes"][str(b)]) if torch_result else None
                    if server is not None and our_best and timm_best and (keras_best or not anchor):
                        path = os.path.join(folder, f"x{b}.npy")
                        np.save(path, inputs[b])
                        calls = {"ours": mode_call(models[0], our_best[1], inputs[b], threads)[0],
                                 "timm": server.prepare(timm_name, timm_best[1], path)}
                        if anchor:
                            calls["keras"] = mode_call(models[1], keras_best[1], inputs[b], threads)[0]
                        print(f"  re-timing {name} batch {b} together: ours {our_best[1]}, timm {timm_best[1]}"
                              + (f", keras {keras_best[1]}" if anchor else ""), flush=True)
                        again = interleaved_times(calls, args.warmup, args.repeats, args.rounds)
                        our_best, timm_best = again_best(again["ours"], our_best), again_best(again["timm"], timm_best)
                        if anchor:
                            keras_best = again_best(again["keras"], keras_best)
                    table.append((name, b, our_best, anchor, keras_best, timm_name if torch_result else None,
                                  timm_best))
                    for other, side in ((keras_best, "keras"), (timm_best, "timm")):
                        if other is not None and (our_best is None or our_best[0] > other[0]):
                            missed[name].append((b, side))
    finally:
        if server is not None:
            server.close()

    header = ("| model | MACs | batch | ours (fused) ms (mode) | keras.applications ms (mode) | ratio "
              "| timm ms (mode) | ratio |")
    lines = [header, "|" + "---|" * 8]
    for name, b, our_best, anchor, keras_best, timm_name, timm_best in table:
        lines.append(
            f"| {name} | {format_macs(macs[name])} | {b} | {fmt_best(our_best)} | "
            f"{(anchor + ' ' + fmt_best(keras_best)) if anchor else '-'} | {fmt_ratio(our_best, keras_best)} | "
            f"{fmt_best(timm_best) if timm_name else '-'} | {fmt_ratio(our_best, timm_best)} |"
        )
    print("\nratio = ours / anchor, each side at its best mode (< 1: ours faster)")
    print("\n".join(lines), flush=True)

    # roofline: each model's best float32 mode (and its int8 file) against the ceilings measured above
    roof_lines = ["| model | batch | MACs per byte | best fp32 mode | GMAC/s | of fp32 peak | roofline bound "
                  "| int8 file GMAC/s | of int8 peak |", "|" + "---|" * 9]
    for name, b, our_best, *_ in table:
        if our_best is None:
            continue
        point = roofline_point(mac_counts[name], our_best[0], peaks, batch_size=b)
        int8 = next((r for r in rows[name] if r.mode == "tflite_int8" and r.batch_size == b and r.ok), None)
        int8_cells = "- | -"
        if int8 is not None and peaks.int8_gmacs:
            q = roofline_point(mac_counts[name], int8.median_ms, peaks, batch_size=b, int8=True)
            int8_cells = f"{q.achieved_gmacs:.0f} | {100 * q.fraction_of_peak:.0f}%"
        roof_lines.append(f"| {name} | {b} | {point.intensity:.1f} | {our_best[1]} | {point.achieved_gmacs:.0f} | "
                          f"{100 * point.fraction_of_peak:.0f}% | {point.bound_gmacs:.0f} ({point.bound}) | "
                          f"{int8_cells} |")
    print(f"\nroofline: {peaks}")
    print("\n".join(roof_lines), flush=True)

    # the keras.applications target holds in every mode: ratio per mode, both sides timed in alternation
    per_mode_lines = []
    if keras_rows:
        per_mode_lines = ["| model | batch | " + " | ".join(args.modes) + " |", "|" + "---|" * (2 + len(args.modes))]
        for name in keras_rows:
            for b in args.batch_sizes:
                cells = []
                for mode in args.modes:
                    mine, theirs = (next(r for r in side if r.mode == mode and r.batch_size == b)
                                    for side in (rows[name], keras_rows[name]))
                    if not (mine.ok and theirs.ok):
                        cells.append("failed" if not mine.ok else "keras failed")
                        continue
                    ratio = mine.median_ms / theirs.median_ms
                    cells.append(f"{ratio:.2f}")
                    if ratio > 1.0:
                        missed[name].append((b, f"keras {mode}"))
                per_mode_lines.append(f"| {name} vs {PAIRS[name][0]} | {b} | " + " | ".join(cells) + " |")
        print("\nratio = ours / keras.applications in each mode (alternating rounds)")
        print("\n".join(per_mode_lines), flush=True)

    # every mode, for the execution-policy question (graph vs XLA on CPU)
    mode_lines = ["| model | batch | " + " | ".join(args.modes) + " |", "|" + "---|" * (2 + len(args.modes))]
    for name in args.models:
        for source in [rows[name]] + ([keras_rows[name]] if name in keras_rows else []):
            for b in args.batch_sizes:
                cells = []
                for mode in args.modes:
                    r = next(r for r in source if r.mode == mode and r.batch_size == b)
                    cells.append((f"{r.median_ms:.1f} ± {r.iqr_ms:.1f}" + (" *" if r.note else "")) if r.ok else
                                 f"failed: {r.error[:80]}")
                label = f"{name} (ours, fused)" if source is rows[name] else f"keras.applications.{PAIRS[name][0]}"
                mode_lines.append(f"| {label} | {b} | " + " | ".join(cells) + " |")
    if torch_result:
        mode_lines += ["", "| timm model | batch | " + " | ".join(args.torch_modes) + " |",
                       "|" + "---|" * (2 + len(args.torch_modes))]
        for name in args.models:
            timm_name = PAIRS[name][1]
            for b in args.batch_sizes:
                modes = torch_result[timm_name]["modes"][str(b)]
                cells = [f"{modes[m]['median_ms']:.1f} ± {modes[m]['iqr_ms']:.1f}" if "median_ms" in modes[m]
                         else "failed" for m in args.torch_modes]
                mode_lines.append(f"| {timm_name} | {b} | " + " | ".join(cells) + " |")
    print("\nevery mode, median ± IQR (ms)")
    print("\n".join(mode_lines), flush=True)

    # where a target is missed: per layer type, both sides, at the batch it is missed
    breakdown_lines = []
    if missed and not args.no_breakdown:
        print("\nmissed targets: time per layer type (each layer alone, graph mode / leaf module, ms)", flush=True)
        wanted = {PAIRS[n][1]: sorted({b for b, side in v if side == "timm"}) for n, v in missed.items()}
        wanted = {k: v for k, v in wanted.items() if v}
        torch_breakdown = {}
        if wanted and args.torch_python:
            with tempfile.TemporaryDirectory() as folder:
                sub = argparse.Namespace(**vars(args))
                sub.models = [n for n in args.models if PAIRS[n][1] in wanted]
                sub.torch_modes = ["eager"]
                sub.repeats, sub.warmup = 1, 1
                try:
                    torch_breakdown = run_torch(sub, threads, inputs, folder, breakdown=wanted)
                except RuntimeError as error:  # the report is still written, without timm's breakdown
                    print(f"timm breakdown failed: {error}", flush=True)
        for name, cases in missed.items():
            for b in sorted({b for b, _ in cases}):
                x = tf.constant(inputs[b])
                sides = [("ours (fused)", per_type_ms(built[name][0], x, args.breakdown_repeats))]
                anchor = PAIRS[name][0]
                if any(side.startswith("keras") and bb == b for bb, side in cases):
                    sides.append((f"keras.applications.{anchor}",
                                  per_type_ms(built[name][1], x, args.breakdown_repeats)))
                timm_name = PAIRS[name][1]
                if str(b) in torch_breakdown.get(timm_name, {}).get("breakdown", {}):
                    sides.append((f"timm {timm_name}", torch_breakdown[timm_name]["breakdown"][str(b)]))
                breakdown_lines.append(f"- **{name}, batch {b}** (missed vs "
                                       f"{', '.join(sorted({s for bb, s in cases if bb == b}))}):")
                for label, per_type in sides:
                    breakdown_lines.append(f"  - {label}: sum {sum(per_type.values()):.1f} ms; {top(per_type)}")
                if any(side.startswith("keras tflite") and bb == b for bb, side in cases):
                    files = [("ours", tflite_ops(built[name][0], args.size, lowering)),
                             (anchor, tflite_ops(built[name][1], args.size))]
                    same = "the same op sequence" if files[0][1] == files[1][1] else "different op sequences"
                    counts = "; ".join(
                        f"{label} {len(ops)} ops (" + ", ".join(f"{op} {n}" for op, n in
                                                           collections.Counter(ops).most_common()) + ")"
                        for label, ops in files)
                    breakdown_lines.append(f"  - TFLite files ({same}): {counts}")
        print("\n".join(breakdown_lines), flush=True)

    if args.plot:
        plot_rows = [r for name in args.models for r in rows[name] + keras_rows.get(name, [])]
        plot_latency_vs_macs(plot_rows, args.plot, title=f"{args.size}x{args.size}, {threads} threads: "
                                                        "ours (fused) vs keras.applications")
        print(f"wrote {args.plot}")

    if args.out:
        torch_v, timm_v, vision_v = torch_versions(args.torch_python) if args.torch_python else ("-", "-", "-")
        litert_version = importlib.metadata.version("ai-edge-litert")
        text = [
            "# Benchmarks",
            "",
            "Generated by `tools/benchmark_vs_anchors.py` "
            f"(`python tools/benchmark_vs_anchors.py {' '.join(argv if argv is not None else sys.argv[1:])}`).",
            "",
            "## Machine",
            f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; {threads} threads for TensorFlow, "
            f"the TFLite interpreter and PyTorch",
            f"- TensorFlow {tf.__version__}, Keras {keras.__version__}, ai-edge-litert {litert_version}, "
            f"torch {torch_v}, timm {timm_v}, torchvision {vision_v}, Python {platform.python_version()}",
            f"- Date: {datetime.date.today().isoformat()}; 1-minute load average {load_start:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end (other work on the machine slows both sides)",
            "",
            "## Method",
            f"Input {args.size}x{args.size}x3, batches {args.batch_sizes}, the same seeded uniform inputs on both "
            f"sides; {args.warmup} warm-up calls, then the median of {args.repeats} timed calls (IQR: "
            "interquartile range). Ours: `keras_convzoo.deploy.fuse(model)`; keras.applications as users get it; "
            f"both in modes {', '.join(args.modes)}, timed together with `keras_convzoo.profile.compare` "
            f"({args.rounds} alternating rounds, so a slow spell of the machine falls on both; a model without a "
            "keras.applications anchor: `profile.benchmark`). timm "
            f"`{'`, `'.join(args.torch_modes)}` in a paired process (eval, `torch.inference_mode`). Each side's best "
            f"float32 mode ({', '.join(m for m in FP32_MODES if m in args.modes)}) is then re-timed with the other "
            f"sides' best modes in {args.rounds} alternating rounds (`keras_convzoo.profile.interleaved_times`; timm "
            "in a PyTorch server process that waits idle while TensorFlow runs, timed there): the best-mode table "
            "holds those times; ratio = ours / anchor (< 1: ours faster)."
            + (f" Our TFLite files: `to_tflite(dense_group_channels={args.dense_group_channels})` (grouped convs "
               f"of at most {args.dense_group_channels} input channels per group as dense block-diagonal convs; "
               "keras.applications files have no grouped convs)." if lowering else ""),
            "",
            "## Best mode per side",
            *lines,
            "",
            "## Roofline",
            f"Measured in the same run (`keras_convzoo.profile.measure_peaks`): {peaks}. GMAC/s = MACs x batch / "
            "best float32 time (the int8 file: its own time, against the int8 peak). MACs per byte: "
            "`count_flops(...).intensity`, each layer reading its inputs and weights and writing its outputs "
            "once in float32 (a quarter of the bytes in int8); roofline bound = min(peak, intensity x "
            "bandwidth). Depthwise layers do few MACs per byte, so MobileNetV2's bound and fraction are low.",
            "",
            *roof_lines,
            "",
            *(["## Ours / keras.applications in every mode",
                "Both models timed in alternating rounds in this process (`keras_convzoo.profile.compare`); "
                "tflite_int8: each side's full-integer file.", "", *per_mode_lines, ""] if per_mode_lines else []),
            "## Every mode (median ± IQR, ms)",
            "(* TFLite file run sample by sample: it could not be resized to the batch.)",
            "",
            *mode_lines,
            "",
        ]
        if breakdown_lines:
            text += ["## Missed targets: time per layer type",
                     "Each layer timed alone on its real input (graph mode; timm: each leaf module), summed per "
                     "layer class, ms. The sums exceed the whole-model times (per-call overheads).", "",
                     *breakdown_lines, ""]
        if args.plot:
            text += [f"Plot: `{args.plot}` (latency per input vs MACs).", ""]
        with open(args.out, "w") as f:
            f.write("\n".join(text))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
