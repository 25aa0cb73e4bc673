"""Latency of fused (``deploy.fuse``) vs unfused models, per family, on this machine.

Builds each model at full size, times ``model(x, training=False)`` in graph
mode (``tf.function``) for the unfused and the fused form in the same process,
checks the outputs agree, and prints milliseconds and the fused/unfused ratio.

Usage:
    python tools/benchmark_fusion.py                       # one model per family, 224x224, batch 1
    python tools/benchmark_fusion.py --models resnext50_32x4d --batch 8 --size 160
"""

import argparse
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _timing import median_ms  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import tf  # noqa: E402

DEFAULT_MODELS = ("resnext50_32x4d", "seresnet50", "mobilenetv2_100", "convnext_tiny", "replknet31_base")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (args.batch, args.size, args.size, 3)),
                    tf.float32)
    print(f"batch {args.batch}, {args.size}x{args.size}, graph mode, median of {args.repeats} (ms)")
    print(f"{'model':<20}{'layers':>8}{'fused':>7}{'unfused':>10}{'fused':>10}{'ratio':>8}{'max|diff|':>11}")
    for name in args.models:
        model = kcz.create_model(name, input_shape=(args.size, args.size, 3), classifier_activation=None)
        fused = kcz.deploy.fuse(model)
        diff = float(np.abs(fused(x).numpy() - model(x, training=False).numpy()).max())
        t_model = median_ms(tf.function(lambda t: model(t, training=False)), x, args.warmup, args.repeats)
        t_fused = median_ms(tf.function(lambda t: fused(t, training=False)), x, args.warmup, args.repeats)
        print(f"{name:<20}{len(model.layers):>8}{len(fused.layers):>7}{t_model:>10.1f}{t_fused:>10.1f}"
              f"{t_fused / t_model:>8.2f}{diff:>11.1e}", flush=True)


if __name__ == "__main__":
    main()
