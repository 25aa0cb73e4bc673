"""Where a model's int8 TFLite time goes against float32: every layer exported alone, both files timed in turn.

Each compute layer of the fused model (convolutions, depthwise convolutions,
adds, pooling, dense; layers that TFLite folds away, such as activations
fused into a convolution, are left out, and a ``ZeroPadding2D`` comes with
the convolution it feeds, into which the converter folds it) is wrapped alone in a Keras model with
its real input shape and exported twice with ``export.to_tflite``: float32,
and full-integer int8 with int8 input and output (``int8_io``: inside a
whole int8 file the layer reads and writes int8, with no QUANTIZE /
DEQUANTIZE around it), calibrated on the layer's real inputs (the activations
that reach it when the model runs on ``--samples`` pixel images, 0-255). A
layer of several inputs (``Add``) is timed with the same tensor in each place.
The two files of a layer and the whole model's two files (float input, as
shipped) are timed in alternating rounds (``profile.interleaved_times``) on
the LiteRT interpreter with XNNPACK, ``--threads`` threads.

Printed: each layer (op, input and output shapes, MACs, median us float32 and
int8, ratio int8/float32), the sums per op type, and the whole model's two
times beside the sums of its layers (how much of the whole the layers
explain: interpreter overhead per op is in the layers' times, the QUANTIZE of
the input and DEQUANTIZE of the output only in the whole model's).

Usage:
    python tools/profile_tflite_layers.py                                   # MobileNetV2 at 224x224
    python tools/profile_tflite_layers.py --model resnext50_32x4d --out layers.md --json layers.json
"""

import argparse
import collections
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from benchmark_training import report_head  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
import keras_convzoo.profile  # noqa: E402,F401
from keras_convzoo import export  # noqa: E402
from keras_convzoo.backend import keras  # noqa: E402
from keras_convzoo.profile import interleaved_times  # noqa: E402

#: Layers that become TFLite ops of their own (the rest fold into them or vanish in a fused, exported model).
COMPUTE_LAYERS = ("Conv2D", "DepthwiseConv2D", "GroupConv2D", "Add", "Dense", "GlobalAveragePooling2D",
                  "AveragePooling2D", "MaxPooling2D", "Multiply", "Concatenate")


def _padding_before(layer):
    """The ``ZeroPadding2D`` layer that feeds ``layer`` (the converter folds it into the convolution), else None."""
    tensor = layer.input
    if isinstance(tensor, (list, tuple)):
        return None
    source = tensor._keras_history[0]
    return source if isinstance(source, keras.layers.ZeroPadding2D) else None


def compute_layers(model):
    """The layers of ``model`` that ``profile_layers`` times: ``COMPUTE_LAYERS`` classes (and subclasses) with one call."""
    chosen = []
    for layer in model.layers:
        names = {cls.__name__ for cls in type(layer).__mro__}
        if names & set(COMPUTE_LAYERS) and len(getattr(layer, "_inbound_nodes", [])) == 1:
            chosen.append(layer)
    return chosen


def _single_layer_model(layer):
    """A one-input model that is ``layer`` alone (its weights shared), at the input shape it has in the model.

    A layer of several inputs (``Add``) gets the one input in each place (the
    exporters take one input; the op reads as many tensors as in the model).
    A convolution fed by a ``ZeroPadding2D`` comes with it (as in the
    exported model, where the converter folds the padding into the convolution).
    """
    tensors = layer_inputs(layer)
    x = keras.Input(tuple(tensors[0].shape[1:]), name="x")
    pad = _padding_before(layer)
    y = pad(x) if pad is not None else x
    outputs = layer([y] * len(tensors) if len(tensors) > 1 else y)
    return keras.Model(x, outputs, name=f"only_{layer.name}")


def layer_inputs(layer):
    """The tensors ``profile_layers`` feeds ``layer``'s file: its inputs, or its padding's input."""
    pad = _padding_before(layer)
    if pad is not None:
        return [pad.input]
    return list(layer.input) if isinstance(layer.input, (list, tuple)) else [layer.input]


class _Runner:
    """One TFLite file on the LiteRT interpreter, input set once; ``__call__`` runs it."""

    def __init__(self, path, inputs, threads):
        self.interpreter = export.tflite_interpreter(path, num_threads=threads)
        self.interpreter.allocate_tensors()
        for detail, x in zip(sorted(self.interpreter.get_input_details(), key=lambda d: d["index"]), inputs):
            if detail["dtype"] == np.int8:
                scale, zero = detail["quantization"]
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
            self.interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))

    def __call__(self):
        self.interpreter.invoke()


def profile_layers(name, size, samples, threads, warmup, repeats, rounds, folder, progress=print):
    """Times every compute layer of ``name`` alone in float32 and int8 TFLite, and the whole model; returns the rows."""
    spec = kcz.get_spec(name)
    shape = spec.input_shape_at(size)
    keras.utils.set_random_seed(0)
    fused = kcz.deploy.fuse(kcz.create_model(name, input_shape=shape, classifier_activation=None,
                                             **(spec.test_overrides if size <= 64 else {})))
    images = np.random.default_rng(0).uniform(0, 255, (samples,) + tuple(shape)).astype("float32")
    layers = compute_layers(fused)
    macs = kcz.profile.count_flops(fused).by_layer
    inputs_of = [layer_inputs(layer) for layer in layers]  # before any layer is called again
    probe = keras.Model(fused.input, [t for tensors in inputs_of for t in tensors])
    activations = [np.asarray(a) for a in probe.predict(images, batch_size=1, verbose=0)]
    rows, at = [], 0
    whole = {}
    for quantization in (None, "int8"):
        path = os.path.join(folder, f"whole_{quantization}.tflite")
        export.to_tflite(fused, path, quantization=quantization, input_shape=shape,
                         representative_data=images if quantization else None, verify=False)
        whole[quantization or "float32"] = _Runner(path, [images[:1]], threads)
    whole_times = interleaved_times({"float32": whole["float32"], "int8": whole["int8"]}, warmup, repeats, rounds)
    for i, layer in enumerate(layers):
        inputs, at = activations[at : at + 1], at + len(inputs_of[i])  # one input in each place (_single_layer_model)
        sub = _single_layer_model(layer)
        files = {}
        for quantization in (None, "int8"):
            path = os.path.join(folder, f"layer{i}_{quantization}.tflite")
            export.to_tflite(sub, path, quantization=quantization, verify=False,
                             representative_data=(lambda inputs=inputs: ([x[j : j + 1] for x in inputs]
                                                                         for j in range(len(inputs[0]))))
                             if quantization else None, int8_io=bool(quantization))
            files[quantization or "float32"] = _Runner(path, [x[:1] for x in inputs], threads)
        times = interleaved_times(files, warmup, repeats, rounds)
        out_shape = tuple(sub.output.shape)
        row = dict(layer=layer.name, op=type(layer).__name__,
                   input=[list(x.shape[1:]) for x in inputs], output=list(out_shape[1:]),
                   macs=int(macs.get(layer.name, 0)),
                   float32_us=1e3 * float(np.median(times["float32"])), int8_us=1e3 * float(np.median(times["int8"])))
        rows.append(row)
        progress(f"  {row['layer']:<28} {row['op']:<24} float32 {row['float32_us']:8.1f} us  int8 "
                 f"{row['int8_us']:8.1f} us  ratio {row['int8_us'] / row['float32_us']:.2f}")
    whole_row = {k: 1e3 * float(np.median(v)) for k, v in whole_times.items()}
    return rows, whole_row


def tables(rows, whole):
    """Markdown tables: per layer, per op type, and the whole model against the sums of its layers."""
    lines = ["| layer | op | input | output | MMACs | float32 us | int8 us | int8 / float32 |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['op']} | {'; '.join('x'.join(map(str, s)) for s in r['input'])} | "
                     f"{'x'.join(map(str, r['output']))} | {r['macs'] / 1e6:.1f} | {r['float32_us']:.1f} | "
                     f"{r['int8_us']:.1f} | {r['int8_us'] / r['float32_us']:.2f} |")
    per_op = collections.defaultdict(lambda: [0, 0.0, 0.0, 0])
    for r in rows:
        entry = per_op[r["op"]]
        entry[0] += 1
        entry[1] += r["float32_us"]
        entry[2] += r["int8_us"]
        entry[3] += r["macs"]
    lines += ["", "| op | layers | MMACs | float32 us | int8 us | int8 / float32 | share of int8 time |",
              "|" + "---|" * 7]
    total8 = sum(r["int8_us"] for r in rows)
    total32 = sum(r["float32_us"] for r in rows)
    for op, (n, t32, t8, macs) in sorted(per_op.items(), key=lambda item: -item[1][2]):
        lines.append(f"| {op} | {n} | {macs / 1e6:.0f} | {t32:.0f} | {t8:.0f} | {t8 / t32:.2f} | {t8 / total8:.0%} |")
    lines += ["", "| | float32 us | int8 us | int8 / float32 |", "|---|---:|---:|---:|",
              f"| sum of the layers | {total32:.0f} | {total8:.0f} | {total8 / total32:.2f} |",
              f"| whole model (float input and output) | {whole['float32']:.0f} | {whole['int8']:.0f} | "
              f"{whole['int8'] / whole['float32']:.2f} |"]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--size", type=int, default=224, help="input side (<= 64: the model's test twin)")
    parser.add_argument("--samples", type=int, default=8, help="calibration images (0-255 pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="write the report as Markdown")
    parser.add_argument("--json", help="write the rows (unrounded us) as JSON")
    args = parser.parse_args(argv)
    if args.model not in kcz.list_models():
        parser.error(f"--model must be a registered model name (kcz.list_models()). Received: {args.model!r}")
    print(f"{args.model} at {args.size}x{args.size}: each layer alone, float32 vs int8 TFLite, {args.threads} threads",
          flush=True)
    with tempfile.TemporaryDirectory() as folder:
        rows, whole = profile_layers(args.model, args.size, args.samples, args.threads, args.warmup, args.repeats,
                                     args.rounds, folder)
    lines = tables(rows, whole)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "whole": whole}, f, indent=1)
    if args.out:
        from importlib.metadata import version

        text = [*report_head(f"int8 vs float32 TFLite per layer: {args.model}", "profile_tflite_layers.py", argv,
                             args.threads, None, runtimes=[f"ai-edge-litert {version('ai-edge-litert')}"]),
                f"- {args.size}x{args.size}, batch 1, LiteRT interpreter with XNNPACK; each layer alone in a file "
                f"(int8 with int8 input and output), medians of {args.repeats} runs in {args.rounds} alternating "
                "rounds", "", *lines, ""]
        with open(args.out, "w") as f:
            f.write("\n".join(text))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
