"""Where ConvNeXt's time goes: ours vs keras.applications vs timm (PyTorch), whole model and per op type.

Whole model: ``keras.applications.ConvNeXtTiny`` and ``keras_convzoo.ConvNeXtTiny``
(unfused; the fused form is identical for ConvNeXt except the LN-free convs)
in eager, graph (``tf.function``) and XLA (``jit_compile=True``), same
process, same input; printed with the ratio ours / keras.applications.

Per op type: every layer of the model is timed alone on its real input
(batch 1, graph mode) and the times are summed per layer class, which shows
which op dominates and how it compares between the two Keras models.

PyTorch: with ``--torch-python PATH`` (a Python with torch and timm; torch is
never imported in this process) a paired process times timm's
``convnext_tiny`` the same way (whole model, and each leaf module type on
its real input) with the same thread count.

Usage:
    python tools/profile_convnext.py                    # batch 1, 224x224
    python tools/profile_convnext.py --batch 8 --torch-python /path/to/venv-torch/bin/python
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _timing import median_ms  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

TORCH_SCRIPT = textwrap.dedent(
    """
    import collections, json, sys, time
    import torch, timm
    threads, batch, size, repeats = map(int, sys.argv[1:5])
    torch.set_num_threads(threads)
    model = timm.create_model("convnext_tiny", pretrained=False).eval()
    x = torch.randn(batch, 3, size, size)

    def median_ms(fn, *args):
        for _ in range(3):
            fn(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter(); fn(*args); times.append(time.perf_counter() - start)
        times.sort()
        return 1e3 * times[len(times) // 2]

    inputs = {}
    leaves = [m for m in model.modules() if not list(m.children())]
    def keep(module, args, output):  # returns None: the output is left as it is
        inputs.setdefault(module, args)

    hooks = [m.register_forward_hook(keep) for m in leaves]
    with torch.inference_mode():
        model(x)
        for h in hooks:
            h.remove()
        total = median_ms(model, x)
        per_type = collections.Counter()
        for module, args in inputs.items():
            per_type[type(module).__name__] += median_ms(module, *args)
    # ConvNeXt blocks apply gamma (layer scale) and the residual add inline, not as modules.
    print(json.dumps({"total": total, "per_type": per_type}))
    """
)


def _layer_inputs(model, x):
    """Maps each layer to the tensor it receives for input ``x`` (single-input layers only)."""
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    probes = keras.Model(model.inputs, [l.input for l in layers])
    values = probes(x, training=False)
    return list(zip(layers, values))


def per_type_ms(model, x, repeats):
    """Sum of per-layer graph-mode medians, by layer class."""
    totals = collections.Counter()
    for layer, value in _layer_inputs(model, x):
        if isinstance(value, (list, tuple)):
            fn = tf.function(lambda *t, layer=layer: layer(list(t), training=False))
            totals[type(layer).__name__] += median_ms(lambda v: fn(*v), value, 2, repeats)
        else:
            fn = tf.function(lambda t, layer=layer: layer(t, training=False))
            totals[type(layer).__name__] += median_ms(fn, value, 2, repeats)
    return totals


def whole_model_ms(model, x, repeats):
    modes = {
        "eager": lambda t: model(t, training=False),
        "graph": tf.function(lambda t: model(t, training=False)),
        "xla": tf.function(lambda t: model(t, training=False), jit_compile=True),
    }
    return {mode: median_ms(fn, x, 3, repeats if mode != "eager" else max(3, repeats // 3))
            for mode, fn in modes.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--torch-python", help="a Python with torch and timm, for the paired timm run")
    parser.add_argument("--no-per-op", action="store_true", help="whole-model timings only")
    args = parser.parse_args(argv)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    x = tf.constant(np.random.default_rng(0).standard_normal((args.batch, args.size, args.size, 3)), tf.float32)
    reference = keras.applications.ConvNeXtTiny(
        weights=None, include_preprocessing=False, input_shape=(args.size, args.size, 3)
    )
    ours = kcz.ConvNeXtTiny(input_shape=(args.size, args.size, 3))
    print(f"ConvNeXt-T, batch {args.batch}, {args.size}x{args.size}, {threads} threads, medians (ms)")
    print(f"{'mode':<8}{'keras.applications':>20}{'keras_convzoo':>15}{'ratio':>8}")
    ref_t, our_t = whole_model_ms(reference, x, args.repeats), whole_model_ms(ours, x, args.repeats)
    for mode in ref_t:
        print(f"{mode:<8}{ref_t[mode]:>20.1f}{our_t[mode]:>15.1f}{our_t[mode] / ref_t[mode]:>8.2f}", flush=True)
    torch_result = None
    if args.torch_python:
        out = subprocess.run(
            [args.torch_python, "-c", TORCH_SCRIPT, str(threads), str(args.batch), str(args.size), str(args.repeats)],
            capture_output=True, text=True, check=True,
        )
        torch_result = json.loads(out.stdout.strip().splitlines()[-1])
        best = min(our_t.values())
        print(f"timm convnext_tiny (PyTorch, eval): {torch_result['total']:.1f} ms; "
              f"ours best / timm = {best / torch_result['total']:.2f}")
    if args.no_per_op:
        return
    print("\nper layer type, each layer timed alone on its real input (graph mode, ms)")
    ref_ops, our_ops = per_type_ms(reference, x, args.repeats), per_type_ms(ours, x, args.repeats)
    for title, ops in (("keras.applications", ref_ops), ("keras_convzoo", our_ops)):
        print(f"  {title}: " + ", ".join(f"{k} {v:.1f}" for k, v in ops.most_common()))
    if torch_result:
        print("  timm: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                     sorted(torch_result["per_type"].items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    sys.exit(main())
