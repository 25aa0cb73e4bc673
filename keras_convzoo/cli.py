"""The ``convzoo`` command line: ``list``, ``info NAME``, ``download NAME``, ``port-timm NAME``,
``benchmark NAME``, ``export NAME``.

Errors print one readable line (exit code 2) unless ``--debug`` is given.
"""

import argparse
import os
import re
import sys

from keras_convzoo.progress import ProgressBar


def _cmd_list(args):
    from keras_convzoo.applications import get_spec, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"No registered model matches {args.pattern!r}.")
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'constructor':<14} {'family':<12} {'params (M)':>10}")
    for name in names:
        spec = get_spec(name)
        params = f"{spec.reference_params / 1e6:.2f}" if spec.reference_params else "-"
        print(f"{name:<{width}}  {spec.entrypoint:<14} {spec.family:<12} {params:>10}")
    return 0


def _spatial_sizes(spec, input_size):
    """``--input-size`` values as one size per spatial dim of ``spec`` (None: the default size)."""
    if input_size is None:
        return spec.default_input_shape[:-1]
    if len(input_size) == 1:
        input_size = list(input_size) * spec.spatial_dims
    if len(input_size) != spec.spatial_dims or min(input_size) < 1:
        raise ValueError(
            f"--input-size needs 1 or {spec.spatial_dims} positive sizes for '{spec.name}'. "
            f"Received: {' '.join(str(s) for s in input_size)}"
        )
    return tuple(int(s) for s in input_size)


def _cmd_info(args):
    from keras_convzoo.applications import create_model, get_spec
    from keras_convzoo.profile import count_flops, count_params, format_macs

    spec = get_spec(args.name)
    sizes = _spatial_sizes(spec, args.input_size)
    kwargs = {} if args.input_size is None else {"input_shape": sizes + (spec.input_channels,)}
    model = create_model(args.name, **kwargs)
    counts = count_params(model)
    model_sizes = tuple(model.input_shape[1:-1])
    macs = count_flops(model, sizes if None in model_sizes else None)
    macs_at = "x".join(str(d) for d in macs.input_shape[:-1])
    rows = [
        ("name", spec.name),
        ("constructor", f"keras_convzoo.{spec.entrypoint}"),
        ("family", spec.family),
        ("default input", f"{spec.default_size}x{spec.default_size}x{spec.input_channels}"),
        ("min input size", str(spec.min_size)),
        ("trainable params", f"{counts['trainable']:,}"),
        ("non-trainable params", f"{counts['non_trainable']:,}"),
        ("total params", f"{counts['total']:,}"),
        ("reference params", f"{spec.reference_params:,} ({spec.reference})" if spec.reference_params else "-"),
        ("matches reference", _matches_reference(spec, kwargs, counts)),
        ("MACs", f"{format_macs(macs.total)} at {macs_at} ({macs.total:,})"),
        ("layers", str(len(model.layers))),
        ("paper", spec.paper),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    _print_pretrained(spec.name)
    return 0


def _matches_reference(spec, kwargs, counts):
    """Whether the trainable count equals the reference's, on the model the reference counted."""
    from keras_convzoo.applications import create_model
    from keras_convzoo.profile import count_params

    if not spec.reference_params:
        return "-"
    if spec.reference_kwargs and dict(spec.reference_kwargs) != kwargs:  # e.g. CCNN's 10 classes at 32x32
        counts = count_params(create_model(spec.name, **spec.reference_kwargs))
        built = ", ".join(f"{k}={v!r}" for k, v in spec.reference_kwargs.items())
        return f"{counts['trainable'] == spec.reference_params} (counted with {built})"
    return str(counts["trainable"] == spec.reference_params)


def _print_pretrained(name):
    """The variant's pretrained weights: tag, source, classes, input size, license (one line each)."""
    from keras_convzoo.weights.pretrained import list_pretrained, table_metadata

    entries = [e for e in list_pretrained(name) if e.name == name]
    if not entries:
        reasons = [row["reason"] for row in table_metadata()["unavailable"] if row["name"] == name]
        print(f"\npretrained weights: none ({reasons[0] if reasons else 'no upstream weights'})")
        return
    print("\npretrained weights (weights=TAG; 'imagenet' = the first):")
    tag_width = max(len(e.tag) for e in entries)
    for entry in entries:
        where = entry.download_url
        size = "x".join(str(d) for d in entry.input_size)
        print(f"  {entry.tag:<{tag_width}}  {entry.source:<6} {entry.num_classes:>6} classes  {size:>7}  "
              f"{entry.license:<14} {where}")


def _tflite_lowering(args, applies, where):
    """The ``to_tflite`` lowering options of ``--depthwise-max-taps`` / ``--dense-group-channels``.

    ``applies`` says whether the command writes TFLite files; ``where`` names
    the arguments that make it do so (for the error message).
    """
    options = {}
    if args.depthwise_max_taps is not None:
        if not applies or args.depthwise_max_taps < 0:
            raise ValueError(
                f"--depthwise-max-taps applies to {where} only and must be >= 0 (0: keep kernels whole). "
                f"Received: {args.depthwise_max_taps}"
            )
        options["depthwise_max_taps"] = args.depthwise_max_taps or None
    if args.dense_group_channels is not None:
        if not applies or args.dense_group_channels < 1:
            raise ValueError(
                f"--dense-group-channels applies to {where} only and must be >= 1. "
                f"Received: {args.dense_group_channels}"
            )
        options["dense_group_channels"] = args.dense_group_channels
    return options


def _cmd_benchmark(args):
    from keras_convzoo.applications import get_spec
    from keras_convzoo.profile import benchmark, format_table, write_csv
    from keras_convzoo.profile.benchmark import plot_latency_vs_macs

    specs = [get_spec(name) for name in args.names]  # unknown names fail before any timing
    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot must name a .png file. Received: {args.plot}")
    lowering = _tflite_lowering(args, any(m.startswith("tflite") for m in args.modes),
                                "--modes tflite/tflite_int8")
    if args.rounds is not None:
        rows = _interleaved_rows(args, specs, lowering)
    else:
        rows = []
        for spec in specs:
            size = None if args.input_size is None else _spatial_sizes(spec, args.input_size)
            result = benchmark(
                spec.name,
                batch_sizes=args.batch_sizes,
                input_size=size,
                modes=args.modes,
                warmup=args.warmup,
                repeats=args.repeats,
                fuse=args.fuse,
                num_threads=args.threads,
                model_kwargs=dict(spec.test_overrides) if args.tiny else None,
                progress=ProgressBar(f"benchmark {spec.name}"),
                tflite_options=lowering,
            )
            rows += result
            print(format_table(result) if len(rows) == len(result) else format_table(result).split("\n", 1)[1],
                  flush=True)
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    if args.plot:
        title = f"{', '.join(args.names)}{' (fused)' if args.fuse else ''}"
        plot_latency_vs_macs(rows, args.plot, title=title)
        print(f"wrote {args.plot}")
    return 0


def _interleaved_rows(args, specs, lowering):
    """``benchmark --rounds``: the models timed together (``profile.compare``), then ratios to the first."""
    from keras_convzoo.applications import create_model
    from keras_convzoo.profile import compare, format_table

    if len(specs) < 2:
        raise ValueError(f"--rounds compares two or more models. Received: {len(specs)} name")
    models = {}
    for spec in specs:
        size = _spatial_sizes(spec, args.input_size)
        kwargs = dict(spec.test_overrides) if args.tiny else {}
        models[spec.name] = create_model(spec.name, input_shape=size + (spec.input_channels,), weights=None,
                                         **kwargs)
    rows = compare(models, batch_sizes=args.batch_sizes, input_size=None, modes=args.modes, warmup=args.warmup,
                   repeats=args.repeats, rounds=args.rounds, fuse=args.fuse, num_threads=args.threads,
                   progress=ProgressBar("benchmark " + ", ".join(models)), tflite_options=lowering)
    print(format_table(rows), flush=True)
    first = specs[0].name
    print(f"\nratio to {first} (timed in {args.rounds} alternating rounds)")
    for row in rows:
        if row.model == first:
            base = row
        elif row.ok and base.ok:
            print(f"{row.model:<22}{row.mode:<13}{row.batch_size:>5}{row.median_ms / base.median_ms:>8.2f}")
    return rows


def _cmd_port_timm(args):
    from keras_convzoo.weights.timm import convert_timm_weights

    out = convert_timm_weights(args.name, args.out, checkpoint=args.checkpoint, tag=args.tag,
                               progress=ProgressBar(f"porting {args.name}"))
    print(f"wrote {out}")
    return 0


def _cmd_download(args):
    from keras_convzoo.applications import get_spec, list_models
    from keras_convzoo.weights import pretrained

    if args.all == bool(args.names):
        raise ValueError("Name the variants to download (e.g. `convzoo download resnext50_32x4d`) or pass --all.")
    if args.all and args.tag != pretrained.DEFAULT_TAG:
        raise ValueError(f"--tag applies to named variants only. Received: --all --tag {args.tag}")
    if args.all:
        names = sorted({e.name for e in pretrained.list_pretrained()})
    else:
        names = args.names
        for name in names:
            if name not in list_models():
                get_spec(name)  # raises naming the known models
    entries = [pretrained.resolve(name, args.tag) for name in names]
    failed = []
    for entry in entries:
        try:
            path = pretrained.fetch(entry)
        except OSError as error:  # go on with the others; report them all at the end
            failed.append(entry.key)
            print(f"{entry.key}: failed: {error}", file=sys.stderr, flush=True)
            continue
        line = f"{entry.key}: {path} ({os.path.getsize(path) / 1e6:.1f} MB)"
        if args.mirror:
            line += f" -> {pretrained.copy_to_mirror(entry, path, args.mirror)}"
        print(line, flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(entries)} downloads failed: {', '.join(failed)}")
    return 0


_EXPORT_FORMATS = ("tflite", "onnx", "saved_model")
_EXPORT_QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _image_files(folder, flag):
    """Image files under ``folder`` (class subfolders included), sorted."""
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} must be a folder of images or 'random'. Received: {folder}")
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(_IMAGE_SUFFIXES)
    )
    if not files:
        raise ValueError(f"{flag} folder {folder} has no images ({', '.join(_IMAGE_SUFFIXES)}).")
    return files


def _read_image(path, shape, flag):
    """One image file as a float32 array of ``shape`` (0-255, resized bilinearly); one-line error naming the file."""
    import numpy as np

    from keras_convzoo.backend import tf

    from keras_convzoo.export.report import converter_logs

    try:
        with converter_logs():  # TensorFlow's C++ "rendezvous is aborting" line
            image = tf.io.decode_image(tf.io.read_file(path), channels=shape[-1], expand_animations=False)
    except Exception as error:  # TF's two-line InvalidArgumentError: fold it into one line naming the file
        reason = " ".join(str(error).split("[[")[0].split("{{")[-1].split("}}")[-1].split())
        reason = re.sub(r"\s*\[Op:[^\]]*\].*$", "", reason)
        raise ValueError(f"{flag}: cannot decode image {path}: {reason or type(error).__name__}") from None
    image = tf.cast(image, tf.float32)
    if tuple(image.shape[:2]) != tuple(shape[:2]):
        image = tf.image.resize(image, shape[:2], method="bilinear")
    return np.clip(np.asarray(image, dtype="float32"), 0.0, 255.0)


def _input_images(source, flag, model, spec, shape, count, exclude=()):
    """``count`` model inputs of ``shape`` (no batch): images from a folder (spread over it) or synthetic.

    Folder images are 0-255 pixels, passed through ``preprocess_input`` for
    a registry model (a saved ``.keras`` model scales its own input);
    ``random`` draws synthetic images in the model's own range. Files in
    ``exclude`` are left out (calibration images, when the same folder also
    checks the file). Returns ``(inputs, files used)``.
    """
    import numpy as np

    from keras_convzoo.applications.imagenet_utils import preprocess_input
    from keras_convzoo.export.inputs import spread, synthetic_inputs

    if source == "random":
        return synthetic_inputs(model, shape, count, seed=0)[0], ()
    files = [f for f in _image_files(source, flag) if f not in set(exclude)]
    if not files:
        return None, ()
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(f"{flag} DIR needs an image model; it takes inputs {shape}.")
    files = spread(files, count)
    images = np.stack([_read_image(path, shape, flag) for path in files])
    if spec is not None and spec.preprocessing is not None:
        images = np.asarray(preprocess_input(images, model), dtype="float32")
    return images, tuple(files)


def _load_keras_file(args):
    """``(model, None, input shape)`` of a saved ``.keras`` model (a user's, e.g. a fine-tuned transfer model)."""
    import keras_convzoo  # noqa: F401  (registers the package's layers for deserialisation)
    from keras_convzoo.backend import keras

    if not os.path.isfile(args.name):
        raise ValueError(f"The model file does not exist. Received: {args.name}")
    for flag, value in (("--tiny", args.tiny), ("--weights", args.weights), ("--classes", args.classes)):
        if value:
            raise ValueError(f"{flag} applies to registry names, not to a saved model file ({args.name}).")
    try:
        model = keras.models.load_model(args.name)
    except Exception as error:  # a foreign or damaged file: one line naming it
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"Cannot load {args.name} as a Keras model: {type(error).__name__}: {reason}") from None
    model_shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if model_shape is None:
        raise ValueError(f"{args.name} has several inputs; export it from Python with keras_convzoo.export.")
    spatial = [d for d in model_shape[:-1]]
    if args.input_size is not None:
        sizes = list(args.input_size) * len(spatial) if len(args.input_size) == 1 else list(args.input_size)
        if len(sizes) != len(spatial) or min(sizes) < 1:
            raise ValueError(f"--input-size needs 1 or {len(spatial)} positive sizes for {args.name}. "
                             f"Received: {' '.join(str(s) for s in args.input_size)}")
        known = [(m, g) for m, g in zip(model_shape[:-1], sizes) if m is not None]
        if any(m != g for m, g in known):
            raise ValueError(f"--input-size {' '.join(str(s) for s in args.input_size)} disagrees with the input "
                             f"{(None,) + tuple(model_shape)} of {args.name}; leave it out or match the sizes.")
        spatial = sizes
    if any(d is None for d in spatial):
        raise ValueError(f"{args.name} takes inputs of any size {model_shape}; pass --input-size.")
    return model, None, tuple(spatial) + (model_shape[-1],)


def _cmd_export(args):
    from keras_convzoo import deploy, export
    from keras_convzoo.applications import create_model, get_spec

    if args.format not in _EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(_EXPORT_FORMATS)}. Received: {args.format}")
    if args.quantize not in _EXPORT_QUANTIZATIONS:
        raise ValueError(
            f"--quantize must be one of {', '.join(_EXPORT_QUANTIZATIONS)}. Received: {args.quantize}"
        )
    if args.format != "tflite" and args.quantize != "none":
        raise ValueError(f"--quantize {args.quantize} applies to --format tflite only.")
    if args.quantize == "int8" and args.calibration is None:
        raise ValueError("--quantize int8 needs --calibration DIR (a folder of images) or --calibration random.")
    if args.quantize != "int8" and args.calibration is not None:
        raise ValueError("--calibration is used with --quantize int8 only (use --verify-data DIR to check other files).")
    for flag, value in (("--calibration-samples", args.calibration_samples), ("--verify-samples", args.verify_samples)):
        if value < 1:
            raise ValueError(f"{flag} must be positive. Received: {value}")
    if args.verify_data is None:
        args.verify_data = "random" if args.calibration in (None, "random") else "calibration"
    elif args.verify_data != "none" and args.verify_data != "random" and not os.path.isdir(args.verify_data):
        raise ValueError(f"--verify-data must be a folder of images, 'random' or 'none'. Received: {args.verify_data}")
    lowering = _tflite_lowering(args, args.format == "tflite", "--format tflite")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise ValueError(f"--out: the folder {folder} does not exist; create it first. Received: --out {args.out}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out: the folder {folder} is not writable. Received: --out {args.out}")
    if args.name.endswith(".keras"):
        model, spec, shape = _load_keras_file(args)
    else:
        spec = get_spec(args.name)
        sizes = _spatial_sizes(spec, args.input_size)
        shape = tuple(sizes) + (spec.input_channels,)
        kwargs = dict(spec.test_overrides) if args.tiny else {}
        if args.weights:
            kwargs["weights"] = args.weights
        if args.classes is not None:
            kwargs["classes"] = args.classes
        model = create_model(args.name, input_shape=shape, **kwargs)
    if args.fuse:
        model = deploy.fuse(model)
    checks = dict(verify=args.verify_data != "none", verbose=args.debug)
    calibration, calibration_files, progress = None, (), None
    if args.quantize == "int8":
        calibration, calibration_files = _input_images(
            args.calibration, "--calibration", model, spec, shape, args.calibration_samples
        )
        progress = ProgressBar("calibration")
    if args.verify_data == "calibration":  # the folder's images not used to calibrate, else the calibration ones
        held_out, _ = _input_images(args.calibration, "--calibration", model, spec, shape, args.verify_samples,
                                    exclude=calibration_files)
        if held_out is not None:
            checks["verification_data"] = held_out
    elif args.verify_data not in ("none", "random"):
        checks["verification_data"], _ = _input_images(
            args.verify_data, "--verify-data", model, spec, shape, args.verify_samples
        )
    if args.format == "tflite":
        quantization = None if args.quantize == "none" else args.quantize
        report = export.to_tflite(
            model, args.out, quantization=quantization, representative_data=calibration,
            input_shape=shape, progress=progress, **checks, **lowering,
        )
    elif args.format == "onnx":
        report = export.to_onnx(model, args.out, input_shape=shape, **checks)
    else:
        report = export.to_saved_model(model, args.out, input_shape=shape, **checks)
    print(f"{args.name}{' (tiny twin)' if args.tiny else ''}{', fused' if args.fuse else ''} -> {report.path}")
    print(report)
    return 0


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
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and converter logs")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks and converter logs")
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
    p_bench.add_argument("--modes", nargs="+", default=["eager", "graph", "xla", "tflite", "tflite_int8"],
                         metavar="MODE", help="of eager, graph, xla, tflite, tflite_int8")
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
    p_bench.add_argument("--tiny", action="store_true", help="the variants' tiny test twins (quick checks)")
    p_bench.add_argument("--csv", metavar="FILE", help="write the rows to a CSV file")
    p_bench.add_argument("--plot", metavar="FILE.png", help="plot latency vs MACs (needs matplotlib)")
    p_bench.set_defaults(func=_cmd_benchmark)
    p_port = sub.add_parser("port-timm", help="port timm weights to a .weights.h5 file that records its layout")
    p_port.add_argument("name", help="registry name with a timm counterpart, e.g. seresnet50")
    p_port.add_argument("--checkpoint", metavar="FILE",
                        help="timm state dict (.safetensors, .pth, .bin, .npz; read without torch); default: "
                             "download the tag's weights from the hub")
    p_port.add_argument("--tag", help="timm tag to download (default: the variant's default timm tag)")
    p_port.add_argument("--out", required=True, metavar="FILE.weights.h5", help="output file")
    p_port.set_defaults(func=_cmd_port_timm)
    p_down = sub.add_parser("download", help="fetch pretrained weights into the cache (for offline machines)")
    p_down.add_argument("names", nargs="*", metavar="NAME", help="registry names, e.g. resnext50_32x4d")
    p_down.add_argument("--all", action="store_true", help="every variant's default weights")
    p_down.add_argument("--tag", default="imagenet", help="tag to fetch (default: imagenet, the default)")
    p_down.add_argument("--mirror", metavar="DIR",
                        help="also copy the files into DIR, laid out for KERAS_CONVZOO_MIRROR=DIR")
    p_down.set_defaults(func=_cmd_download)
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
                          help="'imagenet', an upstream tag (see `convzoo info NAME`) or a weights file "
                               "(default: random init)")
    p_export.add_argument("--classes", type=int, metavar="N",
                          help="classifier size, e.g. of fine-tuned --weights (default: the variant's, 1000)")
    p_export.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                          help="export the fused inference form (deploy.fuse; default) or not")
    p_export.add_argument("--tiny", action="store_true", help="the variant's tiny test twin (quick checks)")
    p_export.set_defaults(func=_cmd_export)
    return parser


def _one_line(error):
    """An exception's message on one line (TensorFlow's errors span several)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv=None):
    """Entry point of the ``convzoo`` console script.

    Args:
        argv: argument list (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        print(f"convzoo {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
