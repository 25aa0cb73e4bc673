"""CCNN_4,140 speed: ours vs the official PyTorch code, and the O(N log N) curve for long sequences.

Cases (as in the issue): a (1, 32, 32, 3) image with mask init 0.075 (5x5
kernels at init) and 0.75 (33x33), and an (8, 1024, 1) sequence (causal,
kernel grid = length, FFT where kernels exceed 50 taps). For each: forward
in inference mode and one training step (Adam, cross-entropy), medians.

The official code (github.com/david-knigge/ccnn, a local checkout given by
``--official-dir``) runs in a paired process under ``--torch-python`` with
the same thread count; it needs ``torch`` and ``omegaconf``. Its modules
import plotting/logging packages (wandb, plotly, matplotlib,
torch_geometric) that the model does not use: the paired process puts empty
stand-ins for them in ``sys.modules``; nothing of that code is copied.

The curve: our 1D model's forward time at lengths 1k..16k (batch 1) with the
FFT path and with the direct path forced; ``ms / (N log2 N)`` stays flat for
the FFT path, ``ms / N^2``-like growth shows for the direct one.

Usage:
    python tools/benchmark_ccnn.py                          # ours only
    python tools/benchmark_ccnn.py --torch-python /path/venv-torch/bin/python --official-dir /path/ccnn
"""

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _timing import median_ms  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

CASES = (
    ("image 32x32, mask 0.075", (1, 32, 32, 3), 0.075),
    ("image 32x32, mask 0.75", (1, 32, 32, 3), 0.75),
    ("sequence 8x1024, mask 0.075", (8, 1024, 1), 0.075),
)

TORCH_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys, time, types
    official, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cases = json.loads(sys.argv[4])
    for name in ("wandb", "plotly", "plotly.graph_objects", "matplotlib", "matplotlib.pyplot", "torch_geometric"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["plotly"].graph_objects = sys.modules["plotly.graph_objects"]
    sys.modules["plotly.graph_objects"].Figure = object
    sys.path.insert(0, official)
    import torch
    from omegaconf import OmegaConf
    from models.resnet import ResNet_image, ResNet_sequence
    torch.set_num_threads(threads)

    def build(dim, mask_init, channels):
        net = dict(no_hidden=140, no_blocks=4, data_dim=dim, norm="BatchNorm", dropout=0.0, dropout_in=0.0,
                   dropout_type="Dropout", block=dict(type="S4", prenorm=True), block_width_factors=[0.0],
                   downsampling=[], downsampling_size=-1, nonlinearity="GELU")
        kernel = dict(type="MAGNet", no_hidden=32, no_layers=3, nonlinearity="GELU", norm="Identity",
                      omega_0=2976.49 if dim == 1 else 4231.57, bias=True, size="same" if dim == 1 else "33",
                      chang_initialize=True, init_spatial_value=1.0)
        conv = dict(type="SeparableFlexConv", use_fft=dim == 1, bias=True, padding="same", stride=1, causal=dim == 1)
        mask = dict(type="gaussian", init_value=mask_init, learn_mean=False, dynamic_cropping=True, threshold=0.1,
                    temperature=0.0)
        cls = ResNet_sequence if dim == 1 else ResNet_image
        with contextlib.redirect_stdout(io.StringIO()):
            return cls(channels, 10, *(OmegaConf.create(c) for c in (net, kernel, conv, mask)))

    def median_ms(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
        return 1e3 * sorted(times)[len(times) // 2]

    results = {}
    for name, shape, mask_init in cases:
        dim = len(shape) - 2
        x = torch.randn(shape[0], shape[-1], *shape[1:-1])
        y = torch.randint(0, 10, (shape[0],))
        model = build(dim, mask_init, shape[-1])
        model(x)  # first call fixes train_length and the initialisation
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)

        def train():
            model.train(); optimizer.zero_grad()
            out = model(x).reshape(shape[0], -1)
            torch.nn.functional.cross_entropy(out, y).backward(); optimizer.step()

        def forward():
            model.eval()
            with torch.no_grad():
                model(x)

        results[name] = {"forward": median_ms(forward), "train": median_ms(train)}
    print(json.dumps(results))
    """
)


def _ours(shape, mask_init, **kwargs):
    return kcz.CCNN(input_shape=shape[1:], classes=10, classifier_activation=None, mask_init=mask_init, seed=0,
                    **kwargs)


def time_ours(shape, mask_init, repeats, **kwargs):
    model = _ours(shape, mask_init, **kwargs)
    x = tf.constant(np.random.default_rng(0).standard_normal(shape), tf.float32)
    y = tf.constant(np.arange(shape[0]) % 10)
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train(inputs):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(inputs, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    forward = tf.function(lambda t: model(t, training=False))
    return {"forward": median_ms(forward, x, 3, repeats), "train": median_ms(train, x, 3, repeats)}


def crossover(repeats):
    """Forward + backward of one 140-channel SeparableFlexConv, direct vs FFT, per kernel size."""
    from keras_convzoo.layers import SeparableFlexConv

    print("\nFFT/direct switch: forward + backward of SeparableFlexConv(140), ms")
    print(f"{'input':<16}{'taps':>6}{'direct':>9}{'fft':>9}")
    for shape, sizes in (((8, 1024, 140), (16, 32, 48, 64, 96, 128)), ((1, 32, 32, 140), (5, 7, 9, 11, 15, 21, 33))):
        x = tf.constant(np.random.default_rng(0).standard_normal(shape), tf.float32)
        for taps in sizes:
            times = []
            for method in ("direct", "fft"):
                grid = taps if len(shape) == 4 else shape[1]
                layer = SeparableFlexConv(140, kernel_size=grid, causal=len(shape) == 3, conv_method=method,
                                          dynamic_cropping=len(shape) == 3, mask_init=1.0, seed=0)
                layer(x)
                if len(shape) == 3:  # crop the causal kernel to `taps` through its mask width
                    width = (1.0 - (-1.0 + 2.0 * (shape[1] - taps) / (shape[1] - 1))) / 2.1459 + 1e-4
                    layer.mask_width.assign([width])

                @tf.function
                def step(t, layer=layer):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_sum(tf.square(layer(t)))
                    return tape.gradient(loss, layer.trainable_weights)

                times.append(median_ms(lambda t: step(t)[0], x, 2, repeats))
            real = int(layer.kernel().shape[0])
            print(f"{str(shape):<16}{real:>6}{times[0]:>9.1f}{times[1]:>9.1f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--torch-python", help="Python with torch + omegaconf for the official code")
    parser.add_argument("--official-dir", help="checkout of david-knigge/ccnn")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--crossover", action="store_true", help="only the FFT/direct switch-point table")
    args = parser.parse_args(argv)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    if args.crossover:
        return crossover(args.repeats)
    reference = {}
    if args.torch_python and args.official_dir:
        out = subprocess.run(
            [args.torch_python, "-c", TORCH_SCRIPT, args.official_dir, str(threads), str(args.repeats),
             json.dumps(CASES)],
            capture_output=True, text=True,
        )
        if out.returncode:
            raise SystemExit("official code failed:\n" + out.stderr[-3000:])
        reference = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"CCNN_4,140, {threads} threads, medians of {args.repeats} (ms); ratio = ours / official")
    print(f"{'case':<30}{'':>9}{'ours':>9}{'official':>10}{'ratio':>8}")
    for name, shape, mask_init in CASES:
        ours = time_ours(shape, mask_init, args.repeats)
        for kind in ("forward", "train"):
            ref = reference.get(name, {}).get(kind)
            ratio = f"{ours[kind] / ref:>8.2f}" if ref else f"{'-':>8}"
            ref_text = f"{ref:>10.1f}" if ref else f"{'-':>10}"
            print(f"{name:<30}{kind:>9}{ours[kind]:>9.1f}{ref_text}{ratio}", flush=True)
    if args.skip_curve:
        return
    print("\n1D forward vs length (batch 1, kernel grid = length, mask 0.075: ~8% of the length in taps)")
    print(f"{'length':>8}{'taps':>7}{'fft ms':>9}{'direct ms':>11}{'fft/(N log N)':>15}{'direct/N^2':>12}")
    base = None
    for n in args.lengths:
        shape = (1, n, 1)
        x = tf.constant(np.random.default_rng(0).standard_normal(shape), tf.float32)
        times = {}
        for method in ("fft", "direct"):
            model = _ours(shape, 0.075, conv_method=method)
            times[method] = median_ms(tf.function(lambda t, m=model: m(t, training=False)), x, 2, args.repeats)
        taps = int(model.get_layer("stem_conv").kernel().shape[0])
        nlogn, square = n * math.log2(n), float(n) ** 2
        base = base or (times["fft"] / nlogn, times["direct"] / square)
        print(f"{n:>8}{taps:>7}{times['fft']:>9.1f}{times['direct']:>11.1f}"
              f"{times['fft'] / nlogn / base[0]:>15.2f}{times['direct'] / square / base[1]:>12.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
