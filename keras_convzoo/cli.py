"""The ``convzoo`` commands that build models: ``info NAME --input-size``, ``download``, ``port-timm``,
``benchmark``, ``export``.

The parser, ``main`` and the commands that need no TensorFlow (``list``,
``info NAME``) are in the top-level module ``keras_convzoo_cli``, the console
script's entry point; ``python -m keras_convzoo.cli`` runs the same ``main``.
Each ``cmd_*`` function takes the parsed arguments and returns the exit code.
"""

import os
import re
import sys

from keras_convzoo.backend import tf  # noqa: F401  (keras_convzoo_cli probes the devices through it)
from keras_convzoo.progress import ProgressBar
from keras_convzoo_cli import build_parser, main, print_info  # noqa: F401  (``python -m keras_convzoo.cli``)


def _spatial_sizes(spec, input_size):
    """``--input-size`` values as one size per spatial dim of ``spec`` (None: the default size)."""
    from keras_convzoo.input_shapes import spec_input_shape

    return spec_input_shape(spec, input_size, name="--input-size")[:-1]


def cmd_info(args):
    """``convzoo info NAME --input-size ...``: builds the model at that size and prints its facts."""
    from keras_convzoo.applications import get_spec
    from keras_convzoo.profile.model_index import model_facts

    spec = get_spec(args.name)
    sizes = None if args.input_size is None else _spatial_sizes(spec, args.input_size)
    print_info(model_facts(spec.name, sizes))
    return 0


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


def cmd_benchmark(args):
    from keras_convzoo.applications import get_spec
    from keras_convzoo.profile import benchmark
    from keras_convzoo.profile.output import plot_latency_vs_macs

    from keras_convzoo.profile import MODES

    specs = [get_spec(name) for name in args.names]  # unknown names fail before any timing
    if args.train:
        return _train_benchmark(args, specs)
    for flag, value, default in (("--optimizers", args.optimizers, ["sgd"]), ("--precision", args.precision, "float32")):
        if value != default:
            raise ValueError(f"{flag} applies to --train only. Received: {flag} {value if isinstance(value, str) else ' '.join(value)}")
    args.modes = list(MODES) if args.modes is None else args.modes
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
            rows += _print_rows(rows, result)
    _write_csv(args, rows)
    if args.plot:
        title = f"{', '.join(args.names)}{' (fused)' if args.fuse else ''}"
        plot_latency_vs_macs(rows, args.plot, title=title)
        print(f"wrote {args.plot}")
    return 0


def _train_benchmark(args, specs):
    """``benchmark --train``: one training step per optimizer and batch size, each model in turn."""
    import platform

    from keras_convzoo.profile import benchmark_training, onednn_enabled

    for flag, value in (("--modes", args.modes), ("--rounds", args.rounds), ("--plot", args.plot),
                        ("--depthwise-max-taps", args.depthwise_max_taps),
                        ("--dense-group-channels", args.dense_group_channels), ("--threads", args.threads)):
        if value is not None:
            raise ValueError(f"{flag} applies to inference benchmarks, not to --train.")
    if args.fuse:
        raise ValueError("--fuse applies to inference benchmarks, not to --train (training needs the unfused form).")
    rows = []
    for spec in specs:
        size = None if args.input_size is None else _spatial_sizes(spec, args.input_size)
        result = benchmark_training(
            spec.name, batch_sizes=args.batch_sizes, input_size=size, optimizers=args.optimizers,
            precision=args.precision, warmup=args.warmup, repeats=args.repeats,
            model_kwargs=dict(spec.test_overrides) if args.tiny else None,
            progress=ProgressBar(f"train {spec.name}"),
        )
        rows += _print_rows(rows, result)
    _write_csv(args, rows)
    if onednn_enabled() is False and platform.machine().lower() in ("x86_64", "amd64"):
        print("note: TensorFlow's oneDNN CPU kernels are off (its default on CPUs without AVX-512 VNNI/BF16 or AMX); "
              "TF_ENABLE_ONEDNN_OPTS=1, set before TensorFlow loads, makes training steps much faster on most x86 "
              "CPUs (the documentation's benchmarks page, Training).")
    return 0


def _print_rows(rows, result):
    """Prints ``result``'s rows as a table (its header only when ``rows`` is still empty); returns ``result``."""
    from keras_convzoo.profile import format_table

    table = format_table(result)
    print(table if not rows else table.split("\n", 1)[1], flush=True)
    return result


def _write_csv(args, rows):
    """``--csv FILE``: all rows, one line each."""
    from keras_convzoo.profile import write_csv

    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")


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


def cmd_port_timm(args):
    from keras_convzoo.applications import convert_timm_weights

    out = convert_timm_weights(args.name, args.out, checkpoint=args.checkpoint, tag=args.tag,
                               progress=ProgressBar(f"porting {args.name}"))
    print(f"wrote {out}")
    return 0


def cmd_download(args):
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

    from keras_convzoo.export.converter import converter_logs

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


#: The exporters' argument names in their messages, and the ``convzoo export`` flags that set them.
_CLI_TERMS = (
    ("verify=False skips this check", "--verify-data none skips this check"),
    ("keep_failed=True keeps it", "--keep-failed keeps it"),
    ("representative_data of a few hundred real inputs", "--calibration DIR with a few hundred real images"),
    ("quantization='dynamic'", "--quantize dynamic"),
    ("or 'float16'", "or --quantize float16"),
    ("quantization='float16'", "--quantize float16"),
    ("samples of representative_data", "calibration images"),
    ("samples of verification_data", "--verify-data images"),
)


def in_cli_terms(message):
    """An exporter's message with its argument names replaced by the ``convzoo export`` flags.

    Args:
        message: the text of an exporter's error.

    Returns:
        The text a command-line user can act on.
    """
    for api, cli in _CLI_TERMS:
        message = message.replace(api, cli)
    return message


def cmd_export(args):
    """``convzoo export``; its model-free argument checks ran in ``keras_convzoo_cli.check_export_args``."""
    from keras_convzoo import deploy, export
    from keras_convzoo.applications import create_model, get_spec

    lowering = _tflite_lowering(args, args.format == "tflite", "--format tflite")
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
    checks = dict(verify=args.verify_data != "none", verbose=args.debug, keep_failed=args.keep_failed)
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
    elif args.verify_data == "random":  # synthetic images, also when the calibration set is itself random
        checks["verification_data"] = export.inputs.SYNTHETIC
    elif args.verify_data != "none":
        checks["verification_data"], _ = _input_images(
            args.verify_data, "--verify-data", model, spec, shape, args.verify_samples
        )
    try:
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
    except export.VerificationError as error:
        raise export.VerificationError(in_cli_terms(str(error))) from None
    print(f"{args.name}{' (tiny twin)' if args.tiny else ''}{', fused' if args.fuse else ''} -> {report.path}")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
