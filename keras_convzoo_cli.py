"""The ``convzoo`` command line: ``list``, ``info NAME``, ``download NAME``, ``port-timm NAME``,
``benchmark NAME``, ``export NAME|FILE.keras``.

This module is the console script's entry point. It lies outside the
``keras_convzoo`` package on purpose: importing the package imports
TensorFlow (seconds, and C++ log lines), and ``convzoo --help``, ``convzoo
list`` and ``convzoo info NAME`` need none of it: they read the package's
data files (``keras_convzoo/data/models.json``, generated from the registry
by ``tools/make_model_index.py``, and ``pretrained.json``). The other
commands import the package (``keras_convzoo.cli``) with TensorFlow's C++
start-up lines kept off the terminal unless ``--debug`` is given.

Errors print one readable line (exit code 2) unless ``--debug`` is given.

Example:
```
$ convzoo list 'seresnext*'
$ convzoo info mobilenetv2_100
$ convzoo export mobilenetv2_100 --quantize int8 --calibration images/ --out m.tflite
```
"""

import argparse
import contextlib
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile

PACKAGE = "keras_convzoo"


def package_data(filename):
    """Path of a file in ``keras_convzoo/data`` found without importing the package.

    Args:
        filename: e.g. ``"models.json"``.

    Returns:
        The absolute path.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{PACKAGE} is not installed: `pip install {PACKAGE}`.")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", filename)


def _read_data(filename):
    with open(package_data(filename), encoding="utf-8") as handle:
        return json.load(handle)


def model_index():
    """The generated model index: ``{name: entry}`` (see ``keras_convzoo.applications.index``)."""
    return {entry["name"]: entry for entry in _read_data("models.json")["models"]}


def format_macs(macs):
    """``4.26G``-style text of a MAC count.

    Args:
        macs: a number of multiply-accumulates.

    Returns:
        A short string (``"300.77M"``).
    """
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.2f}{unit}"
    return str(int(macs))


def _cmd_list(args):
    entries = model_index()
    names = sorted(n for n in entries if fnmatch.fnmatchcase(n, args.pattern))
    if not names:
        raise ValueError(f"No registered model matches {args.pattern!r}.")
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'constructor':<14} {'family':<12} {'params (M)':>10}")
    for name in names:
        entry = entries[name]
        params = f"{entry['params']['trainable'] / 1e6:.2f}"  # the default build's, as `convzoo info` shows
        print(f"{name:<{width}}  {entry['entrypoint']:<14} {entry['family']:<12} {params:>10}")
    return 0


def print_info(facts):
    """Prints ``convzoo info``'s table of an index entry (``keras_convzoo.profile.model_index.model_facts``)."""
    params = facts["params"]
    reference = facts["reference_params"]
    if facts["matches_reference"] is None:
        matches = "-"
    elif facts["reference_counted_with"]:  # e.g. CCNN's 10 classes at 32x32
        matches = f"{facts['matches_reference']} (counted with {facts['reference_counted_with']})"
    else:
        matches = str(facts["matches_reference"])
    size = facts["default_size"]
    default_input = "x".join([str(size)] * facts["spatial_dims"] + [str(facts["input_channels"])])
    rows = [
        ("name", facts["name"]),
        ("constructor", f"keras_convzoo.{facts['entrypoint']}"),
        ("family", facts["family"]),
        ("default input", default_input),
        ("min input size", str(facts["min_size"])),
        ("trainable params", f"{params['trainable']:,}"),
        ("non-trainable params", f"{params['non_trainable']:,}"),
        ("total params", f"{params['total']:,}"),
        ("reference params", f"{reference:,} ({facts['reference']})" if reference else "-"),
        ("matches reference", matches),
        ("MACs", f"{format_macs(facts['macs'])} at {'x'.join(str(d) for d in facts['macs_input_shape'][:-1])} "
                 f"({facts['macs']:,})"),
        ("layers", str(facts["layers"])),
        ("paper", facts["paper"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    _print_pretrained(facts["name"])


def _print_pretrained(name):
    """The variant's pretrained weights: tag, source, classes, input size, license, origin (one line each)."""
    table = _read_data("pretrained.json")
    entries = sorted((e for e in table["entries"] if e["name"] == name), key=lambda e: not e["default"])
    if not entries:
        reasons = [row["reason"] for row in table.get("unavailable", ()) if row["name"] == name]
        print(f"\npretrained weights: none ({reasons[0] if reasons else 'no upstream weights'})")
        return
    print("\npretrained weights (weights=TAG; 'imagenet' = the first):")
    tag_width = max(len(e["tag"]) for e in entries)
    for entry in entries:
        where = f"hub {entry['hub_id']}" if entry.get("hub_id") else entry.get("url") or ""
        size = "x".join(str(d) for d in entry["input_size"])
        print(f"  {entry['tag']:<{tag_width}}  {entry['source']:<6} {entry['num_classes']:>6} classes  "
              f"{size:>7}  {entry['license']:<14} {where}")


def _cmd_info(args):
    check_model_names([args.name])
    entry = model_index().get(args.name)
    if entry is None or args.input_size is not None:  # builds the model (a "name.tag": the registry's error)
        return _heavy("info", args.debug)(args)
    print_info(entry)
    return 0


EXPORT_FORMATS = ("tflite", "onnx", "saved_model")
EXPORT_QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def check_export_args(args):
    """``convzoo export``'s argument checks that need no model (one-line ``ValueError`` each).

    Run before TensorFlow is imported, so that a mistyped option fails at
    once. Sets ``args.verify_data`` to its default (``"calibration"`` for
    int8 calibrated on a folder, else ``"random"``) when it is not given.

    Args:
        args: the parsed ``export`` arguments.
    """
    if args.format not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(EXPORT_FORMATS)}. Received: {args.format}")
    if args.quantize not in EXPORT_QUANTIZATIONS:
        raise ValueError(
            f"--quantize must be one of {', '.join(EXPORT_QUANTIZATIONS)}. Received: {args.quantize}"
        )
    if args.format != "tflite" and args.quantize != "none":
        raise ValueError(f"--quantize {args.quantize} applies to --format tflite only.")
    if args.quantize == "int8" and args.calibration is None:
        raise ValueError("--quantize int8 needs --calibration DIR (a folder of images) or --calibration random.")
    if args.quantize != "int8" and args.calibration is not None:
        raise ValueError("--calibration is used with --quantize int8 only (use --verify-data DIR to check other files).")
    if args.calibration not in (None, "random") and not os.path.isdir(args.calibration):
        raise ValueError(f"--calibration must be a folder of images or 'random'. Received: {args.calibration}")
    if args.name.endswith(".keras") and not os.path.isfile(args.name):
        raise ValueError(f"The model file does not exist. Received: {args.name}")
    if isinstance(args.weights, str) and args.weights.lower() == "none":
        args.weights = None  # random init, as the examples' --weights none
    for flag, value in (("--calibration-samples", args.calibration_samples), ("--verify-samples", args.verify_samples)):
        if value < 1:
            raise ValueError(f"{flag} must be positive. Received: {value}")
    if args.verify_data is None:
        args.verify_data = "random" if args.calibration in (None, "random") else "calibration"
    elif args.verify_data != "none" and args.verify_data != "random" and not os.path.isdir(args.verify_data):
        raise ValueError(f"--verify-data must be a folder of images, 'random' or 'none'. Received: {args.verify_data}")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise ValueError(f"--out: the folder {folder} does not exist; create it first. Received: --out {args.out}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out: the folder {folder} is not writable. Received: --out {args.out}")


def check_model_names(names):
    """Refuses names that are neither registered models nor ``.keras`` files, with the closest names.

    Args:
        names: registry names (or saved ``.keras`` files) given on the command line.
    """
    import difflib

    known = model_index()
    for name in names:
        if name in known or name.endswith(".keras"):
            continue
        base, _, tag = name.partition(".")
        if tag and base in known:
            continue  # "name.tag": the registry's own message explains it
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"Unknown model name: {name!r}; {hint}`convzoo list` shows the {len(known)} registered "
                         "models.")


def _heavy(command, debug=False):
    """Runs ``keras_convzoo.cli.cmd_<command>`` (imports the package and TensorFlow).

    The import and the command run with native log lines (TensorFlow's C++
    start-up lines, LiteRT's delegate line) kept off the terminal unless
    ``debug``; the command's own output and errors still show.
    """
    name = f"{PACKAGE}.cli"

    def run(args):
        with quiet_native_logs(enabled=not debug, replay=False):
            if name not in sys.modules:
                module = importlib.import_module(name)
                module.tf.config.list_physical_devices()  # device probing logs (CUDA) now, not mid-command
            return getattr(sys.modules[name], "cmd_" + command.replace("-", "_"))(args)

    return run


@contextlib.contextmanager
def quiet_native_logs(enabled=True, replay=True):
    """Keeps what native code writes to the stderr file descriptor off the terminal.

    TensorFlow's C++ start-up lines (oneDNN, CUDA probing, CPU features) and
    LiteRT's ("Created TensorFlow Lite XNNPACK delegate") are written by
    native code, past ``TF_CPP_MIN_LOG_LEVEL``, so they are caught at the
    file descriptor. Python's own ``sys.stderr`` (progress bars, warnings,
    error messages) is pointed at the real stderr meanwhile, so it still
    shows.

    Args:
        enabled: False leaves stderr alone (``--debug``).
        replay: write what was caught out if the block raises.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        on_descriptor = python_stderr.fileno() == 2  # else (a capture object) Python's writes never reach fd 2
    except (AttributeError, OSError, ValueError):
        on_descriptor = False
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        if on_descriptor:
            sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None),
                              errors="backslashreplace")
        try:
            yield
        except BaseException:
            if replay:
                caught.seek(0)
                text = caught.read().decode(errors="replace")
                if text.strip():
                    sys.stderr.write(text)
            raise
        finally:
            sys.stderr.flush()
            if on_descriptor:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with the closest option for a misspelt one."""

    def error(self, message):
        import difflib

        unknown = re.findall(r"(--?[\w-]+)", message.split(":", 1)[-1]) if "unrecognized" in message else []
        options = [o for action in self._actions for o in action.option_strings]
        for subparsers in (a for a in self._actions if isinstance(a, argparse._SubParsersAction)):
            for name, sub in subparsers.choices.items():
                if name in sys.argv[1:]:
                    options += [o for action in sub._actions for o in action.option_strings]
        hints = [difflib.get_close_matches(u, options, n=1) for u in unknown]
        suggestion = "; ".join(f"did you mean {h[0]}?" for h in hints if h)
        self.exit(2, f"{self.prog}: error: {message}{' (' + suggestion + ')' if suggestion else ''}; see {self.prog} --help\n")


def build_parser():
    """Returns the ``convzoo`` argument parser."""
    parser = _Parser(prog="convzoo", description="keras_convzoo model zoo tools.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks, TensorFlow's and the converters' logs")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks, TensorFlow's and the converters' logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: _add_parser(*a, parents=[common], **k)
    p_list = sub.add_parser("list", help="list registered models")
    p_list.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'seres*'")
    p_list.set_defaults(func=_cmd_list)
    p_info = sub.add_parser("info", help="parameters and settings of a model")
    p_info.add_argument("name", help="registry name, e.g. resnext50_32x4d")
    p_info.add_argument("--input-size", nargs="+", type=int, metavar="SIZE",
                        help="spatial size(s) to build and count MACs at (default: the variant's)")
    p_info.set_defaults(func=_cmd_info)
    p_bench = sub.add_parser("benchmark", help="latency per execution mode and batch size")
    p_bench.add_argument("names", nargs="+", metavar="NAME", help="registry name(s)")
    p_bench.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], metavar="N")
    p_bench.add_argument("--input-size", nargs="+", type=int, metavar="SIZE",
                         help="spatial size(s) (default: each variant's, e.g. 224)")
    p_bench.add_argument("--modes", nargs="+", metavar="MODE",
                         help="execution modes (default: all of keras_convzoo.profile.MODES: eager, graph, xla, "
                              "tflite, tflite_int8, onnxruntime)")
    p_bench.add_argument("--fuse", action="store_true", help="time the fused inference form (deploy.fuse)")
    p_bench.add_argument("--warmup", type=int, default=3)
    p_bench.add_argument("--repeats", type=int, default=15)
    p_bench.add_argument("--threads", type=int, help="TFLite interpreter threads (default: TensorFlow's)")
    p_bench.add_argument("--rounds", type=int, metavar="N",
                         help="time the models together in N alternating rounds (fair ratios on a busy machine)")
    p_bench.add_argument("--depthwise-max-taps", type=int, metavar="N",
                         help="tflite modes: as export --depthwise-max-taps (default 25; 0 keeps kernels whole)")
    p_bench.add_argument("--dense-group-channels", type=int, metavar="N",
                         help="tflite modes: as export --dense-group-channels (grouped convs of at most N input "
                              "channels per group written dense; default: grouped)")
    p_bench.add_argument("--train", action="store_true",
                         help="time one training step (forward, backward, update; model.train_on_batch) instead of "
                              "inference; see --optimizers and --precision")
    p_bench.add_argument("--optimizers", nargs="+", default=["sgd"], metavar="NAME",
                         help="--train: sgd (momentum 0.9) and/or adamw (default: sgd)")
    p_bench.add_argument("--precision", default="float32", metavar="POLICY",
                         help="--train: float32 (default), mixed_bfloat16 (AVX-512 BF16 / AMX CPUs) or mixed_float16")
    p_bench.add_argument("--tiny", action="store_true", help="the variants' tiny test twins (quick checks)")
    p_bench.add_argument("--csv", metavar="FILE", help="write the rows to a CSV file")
    p_bench.add_argument("--plot", metavar="FILE.png", help="plot latency vs MACs (needs matplotlib)")
    p_bench.set_defaults(func=_heavy_command("benchmark"))
    p_port = sub.add_parser("port-timm", help="port timm weights to a .weights.h5 file that records its layout")
    p_port.add_argument("name", help="registry name with a timm counterpart, e.g. seresnet50")
    p_port.add_argument("--checkpoint", metavar="FILE",
                        help="timm state dict (.safetensors, .pth, .bin, .npz; read without torch); default: "
                             "download the tag's weights from the hub")
    p_port.add_argument("--tag", help="timm tag to download (default: the variant's default timm tag)")
    p_port.add_argument("--out", required=True, metavar="FILE.weights.h5", help="output file")
    p_port.set_defaults(func=_heavy_command("port-timm"))
    p_down = sub.add_parser("download", help="fetch pretrained weights into the cache (for offline machines)")
    p_down.add_argument("names", nargs="*", metavar="NAME", help="registry names, e.g. resnext50_32x4d")
    p_down.add_argument("--all", action="store_true", help="every variant's default weights")
    p_down.add_argument("--tag", default="imagenet", help="tag to fetch (default: imagenet, the default)")
    p_down.add_argument("--mirror", metavar="DIR",
                        help="also copy the files into DIR, laid out for KERAS_CONVZOO_MIRROR=DIR")
    p_down.set_defaults(func=_heavy_command("download"))
    p_export = sub.add_parser("export", help="export to TFLite, ONNX or SavedModel, verified against Keras")
    p_export.add_argument("name", help="registry name (e.g. mobilenetv2_100) or a saved model FILE.keras (e.g. a "
                                       "fine-tuned one, taking 0-255 images when its scaling is inside)")
    p_export.add_argument("--format", default="tflite", metavar="FORMAT",
                          help="tflite (default), onnx or saved_model")
    p_export.add_argument("--quantize", default="none", metavar="MODE",
                          help="tflite only: none (default), float16, dynamic or int8")
    p_export.add_argument("--input-size", nargs="+", type=int, metavar="SIZE",
                          help="spatial size(s) of the exported input (default: the variant's, e.g. 224)")
    p_export.add_argument("--calibration", metavar="DIR|random",
                          help="int8 only: a folder of images, or 'random' (quick, calibrates poorly)")
    p_export.add_argument("--calibration-samples", type=int, default=100, metavar="N",
                          help="calibration images, spread over the folder (default 100)")
    p_export.add_argument("--verify-data", metavar="DIR|random|none",
                          help="inputs the file is checked on against Keras: a folder of images (like the real "
                               "ones), 'random' (synthetic images in the model's input range) or 'none' (no "
                               "check); default for int8: the --calibration folder's images not used to calibrate "
                               "(else the calibration images), otherwise random")
    p_export.add_argument("--verify-samples", type=int, default=200, metavar="N",
                          help="images taken from --verify-data DIR, spread over the folder (default 200)")
    p_export.add_argument("--depthwise-max-taps", type=int, metavar="N",
                          help="tflite only: write depthwise kernels of more taps as sums of smaller ones "
                               "(default 25 = export.DEPTHWISE_MAX_TAPS, XNNPACK's one-pass limit; 0 keeps them whole)")
    p_export.add_argument("--dense-group-channels", type=int, metavar="N",
                          help="tflite only: write grouped convs with at most N input channels per group as "
                               "dense block-diagonal convs (faster int8 on x86 CPUs with VNNI/AMX; slower in "
                               "float; default: grouped)")
    p_export.add_argument("--out", required=True, metavar="FILE", help="output file (a folder for saved_model)")
    p_export.add_argument("--weights", metavar="TAG|FILE",
                          help="'imagenet', an upstream tag (see `convzoo info NAME`), a weights file or "
                               "'none' (default: none, random init)")
    p_export.add_argument("--classes", type=int, metavar="N",
                          help="classifier size, e.g. of fine-tuned --weights (default: the variant's, 1000)")
    p_export.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                          help="export the fused inference form (deploy.fuse; default) or not")
    p_export.add_argument("--keep-failed", action="store_true",
                          help="keep a file that fails the check, beside --out under another name (for inspection)")
    p_export.add_argument("--tiny", action="store_true", help="the variant's tiny test twin (quick checks)")
    p_export.set_defaults(func=_heavy_command("export"))
    return parser


def _heavy_command(command):
    def run(args):
        names = args.names if command in ("benchmark", "download") else [args.name]
        check_model_names(names)
        if command == "export":
            check_export_args(args)
        return _heavy(command, args.debug)(args)

    run.__name__ = f"cmd_{command.replace('-', '_')}"
    return run


def one_line(error):
    """An exception's message on one line (TensorFlow's errors span several).

    Args:
        error: an exception.

    Returns:
        The message, whitespace folded, at most 1200 characters.
    """
    text = " ".join(str(error).split())
    return text if len(text) <= 1200 else text[:1197] + "..."


def main(argv=None):
    """Entry point of the ``convzoo`` console script.

    Args:
        argv: argument list (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    if not args.debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.func(args)
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        print(f"convzoo {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
