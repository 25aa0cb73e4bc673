"""Benchmark of the grouped-convolution lowerings of ``layers.GroupConv2D`` on this machine.

For each grouped 3x3 convolution of ResNeXt50 (32x4d) and ResNeXt101 (32x8d)
at 224x224, times in one process, in graph mode (``tf.function``), every
lowering of ``GroupConv2D`` (native, depthwise, split, dense) and Keras'
own ``Conv2D(groups=g)`` (the reference), forward only (inference) and
forward + backward (training; "native" is skipped there where the CPU
kernels have no grouped gradient, i.e. without oneDNN). Prints milliseconds, the fastest lowering, what
``implementation="auto"`` picks, and the ratios auto/keras and auto/best,
with their geometric means. Every lowering's output is checked against Keras'.

Usage:
    python tools/benchmark_group_conv.py                  # batch 1 and 8
    python tools/benchmark_group_conv.py --quick          # batch 1, fewer repeats
    python tools/benchmark_group_conv.py --threads 2 --training
"""

import argparse
import math
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _timing import median_ms  # noqa: E402

from keras_convzoo.backend import keras, tf  # noqa: E402
from keras_convzoo.layers import GroupConv2D  # noqa: E402
from keras_convzoo.layers.group_conv2d import cpu_grouped_conv_supported  # noqa: E402

# (label, channels, input size, stride, groups)
CASES = (
    ("x50 s1 128@56", 128, 56, 1, 32),
    ("x50 s2 256@56", 256, 56, 2, 32),
    ("x50 s1 256@28", 256, 28, 1, 32),
    ("x50 s2 512@28", 512, 28, 2, 32),
    ("x50 s1 512@14", 512, 14, 1, 32),
    ("x50 s2 1024@14", 1024, 14, 2, 32),
    ("x50 s1 1024@7", 1024, 7, 1, 32),
    ("x101 s1 256@56", 256, 56, 1, 32),
    ("x101 s1 512@28", 512, 28, 1, 32),
    ("x101 s1 1024@14", 1024, 14, 1, 32),
    ("x101 s1 2048@7", 2048, 7, 1, 32),
    ("g=C/2 64@56", 64, 56, 1, 32),
    ("g=C/8 64@56", 64, 56, 1, 8),
)
LOWERINGS = ("native", "depthwise", "split", "dense")


def _layers(channels, stride, groups, x):
    padding = "same" if stride == 1 else "valid"  # strided: input zero-padded by 1, as in the models
    reference = keras.layers.Conv2D(channels, 3, strides=stride, padding=padding, groups=groups,
                                    use_bias=False)
    reference(x)
    out = {"keras": reference}
    for impl in LOWERINGS + ("auto",):
        layer = GroupConv2D(channels, 3, strides=stride, padding=padding, groups=groups,
                            use_bias=False, implementation=impl)
        layer(x)
        layer.set_weights(reference.get_weights())
        out[impl] = layer
    return out


def _step(layer, training, xla):
    if not training:
        return tf.function(lambda x: layer(x), jit_compile=xla)

    def fwd_bwd(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x))
        return tape.gradient(y, [x] + layer.trainable_weights)

    return tf.function(fwd_bwd, jit_compile=xla)


def run(args):
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    names = ("keras",) + LOWERINGS
    header = f"{'case':<17}{'b':>3} " + "".join(f"{n:>10}" for n in names)
    header += f"{'best':>10}{'auto':>10}{'auto/keras':>11}{'auto/best':>10}"
    mode = ("training" if args.training else "inference") + (" XLA" if args.xla else " graph")
    print(f"GroupConv2D lowerings, {mode}, ms (median of {args.repeats}), threads={args.threads or 'default'}")
    print(header)
    ratios_keras, ratios_best = [], []
    for label, channels, size, stride, groups in CASES:
        for batch in args.batch_sizes:
            hw = size + 2 if stride == 2 else size
            x = tf.constant(np.random.default_rng(0).standard_normal((batch, hw, hw, channels)),
                            tf.float32)
            layers = _layers(channels, stride, groups, x)
            expected = layers["keras"](x).numpy()
            scale = float(np.abs(expected).max())
            times = {}
            for name in names:
                if name != "keras":
                    diff = float(np.abs(layers[name](x).numpy() - expected).max())
                    if diff > 1e-3 * scale:
                        raise AssertionError(f"{label}: {name} differs from Keras by {diff}")
                if args.training and name == "native" and not cpu_grouped_conv_supported():
                    times[name] = math.nan  # without oneDNN TensorFlow has no CPU gradient for grouped conv
                    continue
                times[name] = median_ms(_step(layers[name], args.training, args.xla), x,
                                         args.warmup, args.repeats)
            auto = layers["auto"].resolved_implementation
            valid = {k: v for k, v in times.items() if k != "keras" and not math.isnan(v)}
            best = min(valid, key=valid.get)
            r_keras, r_best = times[auto] / times["keras"], times[auto] / times[best]
            ratios_keras.append(r_keras)
            ratios_best.append(r_best)
            row = f"{label:<17}{batch:>3} " + "".join(f"{times[n]:>10.2f}" for n in names)
            print(row + f"{best:>10}{auto:>10}{r_keras:>11.2f}{r_best:>10.2f}", flush=True)
    geo = lambda r: math.exp(sum(map(math.log, r)) / len(r))  # noqa: E731
    print(f"geometric mean: auto/keras = {geo(ratios_keras):.2f}, auto/best = {geo(ratios_best):.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF default)")
    parser.add_argument("--training", action="store_true", help="time forward + backward")
    parser.add_argument("--xla", action="store_true", help="jit_compile=True")
    parser.add_argument("--quick", action="store_true", help="batch 1, 5 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.repeats, args.warmup = [1], 5, 1
    run(args)


if __name__ == "__main__":
    main()
