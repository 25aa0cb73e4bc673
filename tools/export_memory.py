"""Peak memory and wall time of full-size exports (fp32 TFLite, int8 TFLite, ONNX), one fresh process each.

Each (model, mode) runs in its own child process (``python tools/export_memory.py
--child NAME MODE FOLDER``) so that no conversion's memory is counted in the
next one: TensorFlow keeps much of what a conversion allocated until the
process ends. The child builds the model as ``tools/export_matrix.py`` does
(registered variant at its default size or ``--size``, logits, random weights
with random BatchNormalization statistics, ``deploy.fuse``; the unfused model
is dropped before the export) and exports it as the export matrix does:
``export.to_tflite`` (fp32 verified on 4 synthetic inputs; int8 calibrated on
``--calibration-samples`` unit-normal inputs and verified on them) or
``export.to_onnx`` (batch 1, verified on 4 synthetic inputs), each exporter
checking its file against Keras. The child prints its own peak resident
memory (``VmHWM``) and wall time after the imports, after the build and at
the end; the parent reports the kernel's accounting of the finished child
(``os.wait4``'s ``ru_maxrss``) as the peak, and the child's whole wall time.

The parent also watches the machine: when ``MemAvailable`` falls under
``--min-available-gb`` it kills the child (the row then says so) instead of
letting the machine run out of memory.

Usage:
    python tools/export_memory.py                                    # one model per family, every mode
    python tools/export_memory.py --models replknet31_base --modes onnx
    python tools/export_memory.py --json after.json --before before.json --out table.md
    python tools/export_memory.py --rows after.json --before before.json   # tables of earlier runs
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: One model per family, full size (each at its default input size, 224 px except CCNN's 32 px).
DEFAULT_MODELS = (
    "resnext50_32x4d",
    "seresnet50",
    "seresnext50_32x4d",
    "mobilenetv2_100",
    "convnext_tiny",
    "replknet31_base",
    "shufflenet_v2_x1_0",
    "ccnn_4_140",
)
MODES = ("tflite_fp32", "tflite_int8", "onnx")
_RESULT = "EXPORT_MEMORY_RESULT "


def _status_kib(field, pid="self"):
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``) in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return None


def child(name, mode, folder, calibration_samples, size=None):
    """Builds ``name`` (at ``size`` px, default: its own) and exports it in ``mode``; prints one result line (JSON)."""
    start = time.perf_counter()
    import gc

    import numpy as np

    import keras_convzoo as kcz
    from keras_convzoo import export
    from keras_convzoo.backend import keras
    from keras_convzoo.testing import randomize_batch_norms

    result = {"model": name, "mode": mode, "import_s": time.perf_counter() - start,
              "import_hwm_kib": _status_kib("VmHWM")}
    begin = time.perf_counter()
    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(size or spec.default_size)
    keras.utils.set_random_seed(0)
    model = kcz.create_model(name, input_shape=shape, classifier_activation=None)
    randomize_batch_norms(model, seed=0)
    fused = kcz.deploy.fuse(model)
    del model
    gc.collect()
    result.update(build_s=time.perf_counter() - begin, build_hwm_kib=_status_kib("VmHWM"),
                  build_rss_kib=_status_kib("VmRSS"), input_shape=list(shape),
                  params=int(fused.count_params()))
    begin = time.perf_counter()
    if mode == "onnx":
        path = os.path.join(folder, f"{name}.onnx")
        report = export.to_onnx(fused, path, input_shape=shape, dynamic_batch=False, num_samples=4)
    else:
        int8 = mode == "tflite_int8"
        path = os.path.join(folder, f"{name}_{mode}.tflite")
        calibration = None
        if int8:
            calibration = np.random.default_rng(100).standard_normal(
                (calibration_samples,) + tuple(shape)).astype("float32")
        report = export.to_tflite(fused, path, quantization="int8" if int8 else None, input_shape=shape,
                                  representative_data=calibration, num_samples=8 if int8 else 4)
    result.update(
        export_s=time.perf_counter() - begin,
        convert_s=report.convert_seconds,
        peak_hwm_kib=_status_kib("VmHWM"),
        size_mb=report.file_size_bytes / 2**20,
        rel_diff=report.relative_diff,
        snr_db=report.snr_db,
    )
    os.remove(path)
    print(_RESULT + json.dumps(result), flush=True)


def run_child(name, mode, folder, calibration_samples=8, min_available_gb=2.0, timeout=3600, size=None):
    """Runs one export in a fresh process; returns its result dict with ``peak_bytes`` and ``wall_s``.

    ``peak_bytes`` is the child's ``ru_maxrss`` from ``os.wait4`` (its peak
    resident memory, as the kernel counted it). On failure ``status`` holds
    the reason and the peak and wall time are still filled in.
    """
    command = [sys.executable, os.path.abspath(__file__), "--child", name, mode, folder,
               "--calibration-samples", str(calibration_samples)] + (["--size", str(size)] if size else [])
    start = time.perf_counter()
    log_path = os.path.join(folder, f"{name}_{mode}.log")
    with open(log_path, "w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        killed = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            available = _mem_available_kib()
            if available is not None and available < min_available_gb * 2**20:
                rss = _status_kib("VmRSS", process.pid) or 0
                killed = (f"killed: the machine had {available / 2**20:.1f} GB available "
                          f"(child at {rss / 2**20:.1f} GB)")
                process.send_signal(signal.SIGKILL)
            elif time.perf_counter() - start > timeout:
                killed = f"killed: ran over {timeout} s"
                process.send_signal(signal.SIGKILL)
            time.sleep(0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    result = {"model": name, "mode": mode}
    for line in output.splitlines():
        if line.startswith(_RESULT):
            result.update(json.loads(line[len(_RESULT):]))
    result.update(peak_bytes=usage.ru_maxrss * 1024, wall_s=wall, returncode=process.returncode)
    if killed:
        result["status"] = killed
    elif process.returncode != 0 or "peak_hwm_kib" not in result:
        lines = [line for line in output.splitlines() if line.strip()]
        result["status"] = f"failed (exit {process.returncode}): " + (lines[-1][:200] if lines else "")
    else:
        result["status"] = "ok"
        os.remove(log_path)
    return result


def machine():
    """A one-line description of this machine and the converter versions."""
    cpu = platform.processor() or platform.machine()
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    features = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
                                        ("amx_tile", "AMX")) if flag in flags]
    if features:
        cpu += f" ({'/'.join(features)})"
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) / 2**20
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for module in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"):
        try:
            versions.append(f"{module} {version(module.replace('_', '-'))}")
        except PackageNotFoundError:
            pass
    return (f"{cpu}, {os.cpu_count()} cores, {total:.0f} GiB RAM, Python {platform.python_version()}, "
            + ", ".join(versions))


def _gb(value):
    return "-" if value is None else f"{value / 2**30:.2f}"


def _seconds(value):
    return "-" if value is None else f"{value:.1f}"


def table(rows):
    """Markdown table of the results."""
    lines = [
        "| model | input | mode | peak GiB | after build GiB | wall s | build s | export s | rel. diff | SNR dB | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        shape = row.get("input_shape")
        size = "x".join(str(d) for d in shape[:2]) if shape else "-"
        build = row.get("build_hwm_kib")
        rel = row.get("rel_diff")
        snr = row.get("snr_db")
        lines.append(
            f"| {row['model']} | {size} | {row['mode']} | {_gb(row.get('peak_bytes'))} | "
            f"{_gb(build * 1024 if build else None)} | {_seconds(row.get('wall_s'))} | "
            f"{_seconds(row.get('build_s'))} | {_seconds(row.get('export_s'))} | "
            f"{'-' if rel is None else f'{rel:.1e}'} | {'-' if snr is None else f'{snr:.1f}'} | {row['status']} |"
        )
    return "\n".join(lines)


def comparison(before, after):
    """Markdown table of two runs' rows (``--json`` files' ``rows``), matched by model and mode."""
    earlier = {(r["model"], r["mode"]): r for r in before}
    lines = [
        ("| model | mode | peak GiB before | peak GiB after | wall s before | wall s after | "
         "rel. diff before / after | SNR dB before / after |"),
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in after:
        old = earlier.get((row["model"], row["mode"]), {})

        def pair(key, spec, old=old, row=row):
            values = [r.get(key) for r in (old, row)]
            return " / ".join("-" if v is None else format(v, spec) for v in values)

        old_peak = old.get("peak_bytes")
        lines.append(
            f"| {row['model']} | {row['mode']} | {_gb(old_peak)}{'' if old.get('status', 'ok') == 'ok' else ' *'} | "
            f"{_gb(row.get('peak_bytes'))} | {_seconds(old.get('wall_s'))} | {_seconds(row.get('wall_s'))} | "
            f"{pair('rel_diff', '.1e')} | {pair('snr_db', '.1f')} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="PATTERN",
                        help="registry names or shell patterns (default: one per family)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--size", type=int, help="input side for every model (default: each variant's, e.g. 224)")
    parser.add_argument("--calibration-samples", type=int, default=8,
                        help="int8: unit-normal representative inputs (default 8)")
    parser.add_argument("--min-available-gb", type=float, default=2.0,
                        help="kill a child when the machine's MemAvailable falls under this (default 2)")
    parser.add_argument("--limit-gb", type=float, default=4.0,
                        help="peak memory each export should stay under, in GB (10^9 bytes; the tables are in GiB): "
                        "marked in the table and the exit status (default 4)")
    parser.add_argument("--out", metavar="FILE", help="also write the markdown table to FILE")
    parser.add_argument("--json", metavar="FILE", help="also write the raw rows as JSON")
    parser.add_argument("--before", metavar="FILE",
                        help="a --json file of an earlier run: also print a before/after table")
    parser.add_argument("--rows", metavar="FILE",
                        help="print the tables of a --json file instead of measuring (with --before: compare)")
    parser.add_argument("--child", nargs=3, metavar=("NAME", "MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.calibration_samples, args.size)
        return 0
    if args.rows:
        with open(args.rows) as f:
            saved = json.load(f)
        return _report(args, saved["machine"], saved["rows"], saved.get("date", "?"))
    import tempfile

    from export_matrix import matching_models

    names = matching_models(args.models, parser)
    described = machine()
    print(f"export memory: {len(names)} model(s) x {', '.join(args.modes)}; {described}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for mode in args.modes:
                row = run_child(name, mode, folder, args.calibration_samples, args.min_available_gb, size=args.size)
                rows.append(row)
                peak = row["peak_bytes"] / 2**30
                flag = "" if row["peak_bytes"] <= args.limit_gb * 1e9 else f"  OVER {args.limit_gb:g} GB"
                print(f"{name:<20} {mode:<12} peak {peak:6.2f} GiB  wall {row['wall_s']:7.1f} s  "
                      f"{row['status']}{flag}", flush=True)
    return _report(args, described, rows, time.strftime("%Y-%m-%d"))


def _report(args, described, rows, date):
    """Prints (and writes, with ``--out`` / ``--json``) the tables; the exit status."""
    text = f"Machine: {described}. Date: {date}.\n\n{table(rows)}\n"
    if args.before:
        with open(args.before) as f:
            earlier = json.load(f)
        text += (f"\nBefore ({earlier['machine']}, {earlier.get('date', '?')}) and after:\n\n"
                 f"{comparison(earlier['rows'], rows)}\n")
    print()
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    if args.json and not args.rows:
        with open(args.json, "w") as f:
            json.dump({"machine": described, "date": date, "rows": rows}, f, indent=1)
    over = [r for r in rows if r["peak_bytes"] > args.limit_gb * 1e9]
    return 0 if all(r["status"] == "ok" for r in rows) and not over else 1


if __name__ == "__main__":
    sys.exit(main())
