"""Reruns the examples with their documented settings and writes (or checks) their result tables in the docs.

Each example prints ``RESULT key=value ...`` lines (the lines
``tests/examples/test_examples.py`` reads). This script runs each example in
a subprocess with the settings below, parses those lines and writes the
example's table into its guide page (``Example.page``, e.g.
``docs/guides/tflite.md``) between its marker comments::

    <!-- example table: tflite_for_phones begin -->
    ...generated table, the command, the software and the machine...
    <!-- example results
    RESULT keras size_bytes=... accuracy=... (the example's lines, verbatim)
    -->
    <!-- example table: tflite_for_phones end -->

The RESULT lines kept in the comment are the one source of the table: ``--check``
first re-renders every table from them (a hand-edited table fails), then
reruns the examples and fails when an accuracy-like figure (accuracy, top-1
agreement) moved by more than ``--tolerance`` (default 0.01: 1 point).
Latencies, sizes and SNRs are not compared: latencies depend on the machine
(the note under each table names the machine they were measured on), sizes
and SNRs on the TensorFlow version. The examples seed everything, make
TensorFlow's ops deterministic and fix its thread count, so a rerun on the
same machine and software prints identical lines.

Usage:
    python tools/run_examples.py                       # rerun every example, rewrite the guides' tables
    python tools/run_examples.py tflite_for_phones     # only these examples
    python tools/run_examples.py --check               # rerun, exit 1 when a figure moved > 1 point
    python tools/run_examples.py --check --no-run      # only check the tables against their RESULT lines
"""

import argparse
import dataclasses
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_OPEN, RESULTS_CLOSE = "<!-- example results", "-->"
META_KEYS = ("software", "machine")


def begin_marker(name):
    return f"<!-- example table: {name} begin -->"


def end_marker(name):
    return f"<!-- example table: {name} end -->"


# ---------------------------------------------------------------------------------------------
# RESULT lines


def parse_results(stdout):
    """The ``RESULT [label] key=value ...`` lines of an output: a list of ``(label or None, {key: value})``."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("RESULT "):
            continue
        label, fields = None, {}
        for token in line.split()[1:]:
            if "=" in token:
                key, value = token.split("=", 1)
                fields[key] = value
            else:
                label = token
        rows.append((label, fields))
    return rows


def result_lines(stdout):
    """The ``RESULT`` lines of an output, verbatim."""
    return [line.rstrip() for line in stdout.splitlines() if line.startswith("RESULT ")]


def row_id(label, fields):
    """What names a row across runs: its label and, where rows share a label, its ``size``."""
    return " ".join(p for p in (label, f"size={fields['size']}" if "size" in fields else None) if p) or "result"


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt_size(num_bytes):
    num_bytes = int(num_bytes)
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.0f} KiB"
    return f"{num_bytes / 1024 / 1024:.2f} MiB"


def fmt_ms(value):
    value = float(value)
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_fraction(value):
    return f"{float(value):.3f}"


def fmt_db(value):
    value = float(value)
    return "-" if math.isinf(value) else f"{value:.1f}"


def md_table(headers, aligns, rows):
    """A Markdown table; ``aligns``: ``"l"`` or ``"r"`` per column."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in aligns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------------------------
# The examples: documented settings, page, table, checked figures


@dataclasses.dataclass(frozen=True)
class Example:
    """One example's result table.

    Args:
        name: script name in ``examples/`` (and the marker's name).
        page: the Markdown file holding the table, relative to the repository root.
        args: command-line arguments of the documented run (besides ``--out``).
        render: ``(rows, command, meta) -> [markdown lines]``; ``rows`` as
            ``parse_results`` returns them.
        checked: the RESULT keys ``--check`` compares (fractions in 0-1).
    """

    name: str
    page: str
    args: tuple
    render: object
    checked: tuple

    @property
    def command(self):
        return " ".join(["python", f"examples/{self.name}.py", *self.args])


def _note(command, meta, latency=None):
    """The line under a table: the command, the software and the machine."""
    text = f"`{command}`; {meta['software']}; {meta['machine']}."
    if latency:
        text += f" {latency} Latencies depend on the machine; `tools/run_examples.py --check` does not compare them."
    return ["", f"<sub>{text}</sub>"]


_TFLITE_LABELS = {
    "keras": "Keras, graph mode (float32 weights)",
    "float32": "TFLite float32",
    "float16": "TFLite float16",
    "dynamic": "TFLite dynamic range",
    "int8": "TFLite int8",
}


def render_tflite(rows, command, meta):
    first = rows[0][1]
    headers = (f"model ({first['test_images']} test digits)", "size", "latency ms", "top-1 agreement", "accuracy",
               "SNR dB", "`to_tflite` check")
    body = [(_TFLITE_LABELS.get(label, label), fmt_size(f["size_bytes"]), fmt_ms(f["latency_ms"]),
             fmt_fraction(f["agreement"]), fmt_fraction(f["accuracy"]), fmt_db(f["snr_db"]), f["check"])
            for label, f in rows]
    latency = (f"Latency: batch 1, median of {first['latency_runs']} runs (LiteRT with {first['threads']} threads; "
               "Keras in a `tf.function`); SNR: of the probabilities against Keras'.")
    return md_table(headers, "lrrrrrl", body) + _note(command, meta, latency)


_CCNN_LABELS = {
    "2d_continuous": '2D, `resolution="continuous"`',
    "2d_fixed": '2D, `resolution="fixed"` (reference rule)',
    "1d_sequence": "1D, 64-step sequence",
}


def render_ccnn(rows, command, meta):
    sizes = []
    for label, f in rows:
        if label != "1d_sequence" and f["size"] not in sizes:
            sizes.append(f["size"])
    by_label = {}
    for label, f in rows:
        by_label.setdefault(label, {})[f["size"]] = f["accuracy"]
    headers = [f"test accuracy ({rows[0][1]['test_digits']} digits)"] + [f"{s}x{s}" for s in sizes]
    body = []
    for label, values in by_label.items():
        if label == "1d_sequence":
            cells = [fmt_fraction(next(iter(values.values())))] + [""] * (len(sizes) - 1)
        else:
            cells = [fmt_fraction(values[s]) if s in values else "" for s in sizes]
        body.append([_CCNN_LABELS.get(label, label)] + cells)
    return md_table(headers, "l" + "r" * len(sizes), body) + _note(command, meta)


def render_transfer(rows, command, meta):
    ((_, f),) = rows
    headers = (f"test accuracy ({f['val_images']} digits)", "frozen backbone", f"after fine-tuning `{f['unfrozen']}`")
    body = [("mobilenetv2_035, random initial weights, 64x64, 6 + 6 epochs", fmt_fraction(f["frozen_accuracy"]),
             fmt_fraction(f["final_accuracy"]))]
    return md_table(headers, "lrr", body) + _note(command, meta)


def render_onnx(rows, command, meta):
    headers = ("input", "photos", "file", "max abs diff", "relative diff", "top-1 agreement", "onnxruntime ms",
               "Keras ms")
    body = [(f"{f['size']}x{f['size']}", f["photos"], fmt_size(f["file_bytes"]), f"{float(f['max_abs_diff']):.1e}",
             f"{float(f['relative_diff']):.1e}", fmt_fraction(f["top1_agreement"]), fmt_ms(f["onnx_ms"]),
             fmt_ms(f["keras_ms"])) for _, f in rows]
    latency = (f"Latency: batch 1, median of {rows[0][1]['latency_runs']} runs (onnxruntime CPU; Keras in a "
               "`tf.function`).")
    return md_table(headers, "lrrrrrrr", body) + _note(command, meta, latency)


EXAMPLES = {
    e.name: e
    for e in (
        Example("transfer_learning", "docs/guides/transfer-learning.md", ("--weights", "none"), render_transfer,
                ("frozen_accuracy", "final_accuracy")),
        Example("tflite_for_phones", "docs/guides/tflite.md", (), render_tflite, ("agreement", "accuracy")),
        Example("ccnn_any_resolution", "docs/guides/ccnn.md", (), render_ccnn, ("accuracy",)),
        Example("export_onnx", "docs/guides/onnx.md", (), render_onnx, ("top1_agreement",)),
    )
}


# ---------------------------------------------------------------------------------------------
# Table blocks


def software():
    """The versions the figures depend on."""
    return f"TensorFlow {metadata.version('tensorflow')}, Keras {metadata.version('keras')}"


def machine(extra=None):
    """The CPU model and core count (Linux: ``/proc/cpuinfo``), plus ``extra``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores" + (f" {extra}" if extra else "")


def render_block(example, lines, meta):
    """The whole block of ``example`` (markers included) from its RESULT lines."""
    rows = parse_results("\n".join(lines))
    out = [begin_marker(example.name)]
    out += example.render(rows, example.command, meta)
    out += [RESULTS_OPEN] + [f"{key}: {meta[key]}" for key in META_KEYS] + list(lines) + [RESULTS_CLOSE]
    out.append(end_marker(example.name))
    return "\n".join(out)


def find_block(text, name, where="the page"):
    """``(start, end)`` offsets of ``name``'s block in ``text`` (markers included)."""
    begin, end = begin_marker(name), end_marker(name)
    start = text.find(begin)
    stop = text.find(end, start + 1) if start >= 0 else -1
    if start < 0 or stop < 0:
        raise ValueError(f"{where} has no '{begin}' ... '{end}' block: add the two markers where the table goes.")
    return start, stop + len(end)


def read_block(text, name, where="the page"):
    """``(RESULT lines, meta)`` stored in ``name``'s block; ``([], {})`` when it holds none yet."""
    start, stop = find_block(text, name, where)
    block = text[start:stop]
    opened = block.find(RESULTS_OPEN)
    if opened < 0:
        return [], {}
    body = block[opened + len(RESULTS_OPEN):block.find(RESULTS_CLOSE, opened + len(RESULTS_OPEN))]
    lines, meta = [], {}
    for line in body.strip().splitlines():
        key = line.split(":", 1)[0]
        if key in META_KEYS:
            meta[key] = line.split(":", 1)[1].strip()
        elif line.startswith("RESULT "):
            lines.append(line.strip())
    return lines, meta


def write_block(text, example, lines, meta):
    start, stop = find_block(text, example.name)
    return text[:start] + render_block(example, lines, meta) + text[stop:]


# ---------------------------------------------------------------------------------------------
# Running and comparing


def run_example(example, out_dir, timeout):
    """Runs ``example`` with its documented settings; returns its stdout (raises in one line on failure)."""
    command = [sys.executable, os.path.join(ROOT, "examples", f"{example.name}.py"), *example.args, "--out", out_dir]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    print(f"$ {example.command}", flush=True)
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{example.command} ran longer than {timeout} s.") from None
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{example.command} exited with {result.returncode}: {tail}")
    if not result_lines(result.stdout):
        raise RuntimeError(f"{example.command} printed no RESULT line.")
    return result.stdout


def compare(example, old_lines, new_lines, tolerance):
    """``(report lines, failures)``: each checked figure of the table against the rerun."""
    old = {row_id(label, f): f for label, f in parse_results("\n".join(old_lines))}
    new = {row_id(label, f): f for label, f in parse_results("\n".join(new_lines))}
    report, failures = [], []
    for rid in list(old) + [r for r in new if r not in old]:
        if rid not in new or rid not in old:
            failures.append(f"{example.name} {rid}: row {'missing from the rerun' if rid in old else 'not in the table'}")
            continue
        for key in example.checked:
            if key not in old[rid] or key not in new[rid]:
                continue
            before, after = float(old[rid][key]), float(new[rid][key])
            moved = abs(after - before)
            line = f"{example.name} {rid} {key}: table {before:.4f}, rerun {after:.4f} ({100 * moved:.1f} points)"
            report.append(line)
            if moved > tolerance + 1e-9:
                failures.append(f"{line} > {100 * tolerance:g}")
    return report, failures


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Usage:" + __doc__.split("Usage:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("examples", nargs="*", help=f"examples to run (default: all of {', '.join(EXAMPLES)})")
    parser.add_argument("--check", action="store_true",
                        help="rerun and exit 1 when an accuracy-like figure moved by more than --tolerance")
    parser.add_argument("--no-run", action="store_true",
                        help="with --check: only check that each table matches the RESULT lines stored with it")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="allowed move of a checked figure (0.01: 1 point)")
    parser.add_argument("--machine", default=None,
                        help="words added to the machine description under the tables, e.g. '(shared, under load)'")
    parser.add_argument("--file", "--readme", dest="file", default=None, metavar="FILE.md",
                        help="read and write every table in FILE.md instead of each example's guide page")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per example")
    parser.add_argument("--log-dir", default=None, help="also write each example's whole output to DIR/NAME.log")
    args = parser.parse_args(argv)
    unknown = [name for name in args.examples if name not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(EXAMPLES)}")
    if args.no_run and not args.check:
        parser.error("--no-run only goes with --check")
    examples = [EXAMPLES[name] for name in (args.examples or EXAMPLES)]

    texts = {}
    failures = []
    for example in examples:
        path = args.file or os.path.join(ROOT, example.page)
        where = os.path.relpath(path)
        if path not in texts:
            with open(path, encoding="utf-8") as f:
                texts[path] = f.read()
        text = texts[path]
        old_lines, old_meta = read_block(text, example.name, where)
        if args.check:
            start, stop = find_block(text, example.name, where)
            if not old_lines:
                failures.append(f"{example.name}: the block in {where} holds no RESULT lines; run without --check first")
                continue
            if set(META_KEYS) - set(old_meta) or text[start:stop] != render_block(example, old_lines, old_meta):
                failures.append(f"{example.name}: the table in {where} differs from its RESULT lines (edited by hand?); "
                                "rerun without --check to regenerate it")
        if args.no_run:
            continue
        with tempfile.TemporaryDirectory(prefix=f"run_examples_{example.name}_") as out_dir:
            try:
                stdout = run_example(example, out_dir, args.timeout)
            except RuntimeError as error:  # the next examples still run; the page keeps this one's table
                failures.append(str(error))
                continue
        if args.log_dir:
            os.makedirs(args.log_dir, exist_ok=True)
            with open(os.path.join(args.log_dir, f"{example.name}.log"), "w") as f:
                f.write(stdout)
        new_lines = result_lines(stdout)
        print("\n".join(new_lines))
        if old_lines:
            report, moved = compare(example, old_lines, new_lines, args.tolerance)
            print("\n".join(report))
            if args.check:
                failures += moved
        if not args.check:
            meta = {"software": software(), "machine": machine(args.machine)}
            texts[path] = write_block(text, example, new_lines, meta)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(texts[path])
            os.replace(tmp, path)
            print(f"wrote {example.name}'s table into {where}", flush=True)
    if failures:
        print("\n".join(["FAILED:"] + failures))
        return 1
    if args.check:
        print(f"OK: {', '.join(e.name for e in examples)} within {100 * args.tolerance:g} point(s) of their tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
