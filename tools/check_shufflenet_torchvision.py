"""Numerical parity of keras_convzoo's ShuffleNetV2 with torchvision's, in two steps.

The PyTorch and TensorFlow environments are separate, so the check runs twice:

1. ``dump`` (in an environment with torch + torchvision, no TensorFlow needed):
   builds torchvision's ``shufflenet_v2_x*`` with random weights (BN
   statistics and affine parameters randomised too, so no BN is the
   identity), runs it in eval mode on seeded random images and writes the
   state dicts, the images (NHWC) and the logits to an ``.npz``.
2. ``compare`` (in the keras_convzoo environment, no torch needed): builds
   ``kcz.ShuffleNetV2(width, classifier_activation=None)``, copies the
   weights by layer name (``port_torchvision``), runs the same images and
   prints the max abs / relative logit difference per width; exits 1 if any
   relative difference exceeds ``--tolerance``.

Usage::

    /work/venv-torch/bin/python tools/check_shufflenet_torchvision.py dump --out /tmp/shufflenet_tv.npz
    /work/venv/bin/python tools/check_shufflenet_torchvision.py compare --npz /tmp/shufflenet_tv.npz
"""

import argparse
import re
import sys

import numpy as np

WIDTH_NAMES = {0.5: "x0_5", 1.0: "x1_0", 1.5: "x1_5", 2.0: "x2_0"}

#: torchvision InvertedResidual sub-module index -> our layer suffix.
_BRANCH1 = {"0": "branch1_dw_conv", "1": "branch1_dw_bn", "2": "branch1_pw_conv", "3": "branch1_pw_bn"}
_BRANCH2 = {
    "0": "branch2_pw1_conv",
    "1": "branch2_pw1_bn",
    "3": "branch2_dw_conv",
    "4": "branch2_dw_bn",
    "5": "branch2_pw2_conv",
    "6": "branch2_pw2_bn",
}
_TOP = {"conv1.0": "stem_conv", "conv1.1": "stem_bn", "conv5.0": "head_conv", "conv5.1": "head_bn", "fc": "predictions"}


def keras_layer_name(module):
    """Maps a torchvision module path (``stage2.0.branch2.3``) to our layer name."""
    if module in _TOP:
        return _TOP[module]
    match = re.fullmatch(r"stage(\d)\.(\d+)\.(branch[12])\.(\d+)", module)
    if not match:
        raise KeyError(f"unmapped torchvision module: {module}")
    stage, index, branch, sub = match.groups()
    table = _BRANCH1 if branch == "branch1" else _BRANCH2
    return f"stage{stage}_block{int(index) + 1}_{table[sub]}"


def dump(args):
    import torch
    import torchvision

    rng = np.random.default_rng(args.seed)
    images = rng.standard_normal((args.batch, args.size, args.size, 3)).astype("float32")
    arrays = {"images": images}
    for width, suffix in WIDTH_NAMES.items():
        torch.manual_seed(args.seed)
        model = getattr(torchvision.models, f"shufflenet_v2_{suffix}")(weights=None)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    c = module.num_features
                    module.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype("float32")))
                    module.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c).astype("float32")))
                    module.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c).astype("float32")))
                    module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype("float32")))
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
        arrays[f"{suffix}/logits"] = logits
        for key, value in model.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                arrays[f"{suffix}/{key}"] = value.numpy()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"shufflenet_v2_{suffix}: {params:,} trainable parameters, logits {logits.shape}")
    np.savez(args.out, **arrays)
    print(f"wrote {args.out}")


def port_torchvision(model, state_dict):
    """Copies a torchvision ShuffleNetV2 state dict (numpy arrays) into our model."""
    from keras_convzoo.backend import keras

    modules = {}
    for key, value in state_dict.items():
        module, _, field = key.rpartition(".")
        modules.setdefault(module, {})[field] = value
    for module, tensors in modules.items():
        layer = model.get_layer(keras_layer_name(module))
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = [tensors[k] for k in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, keras.layers.Dense):
            weights = [tensors["weight"].T, tensors["bias"]]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            weights = [tensors["weight"].transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
        else:
            weights = [tensors["weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO
        layer.set_weights(weights)
    return len(modules)


def compare(args):
    import keras_convzoo as kcz

    data = np.load(args.npz)
    images = data["images"]
    worst = 0.0
    for width, suffix in WIDTH_NAMES.items():
        prefix = f"{suffix}/"
        state = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix) and k != f"{suffix}/logits"}
        model = kcz.ShuffleNetV2(width, classifier_activation=None, input_shape=images.shape[1:])
        ported = port_torchvision(model, state)
        ours = model(images, training=False).numpy()
        reference = data[f"{suffix}/logits"]
        diff = float(np.abs(ours - reference).max())
        relative = diff / float(np.abs(reference).max())
        worst = max(worst, relative)
        print(
            f"shufflenet_v2_{suffix}: {ported} modules ported, logits max |diff| = {diff:.3e} "
            f"(max |logit| {np.abs(reference).max():.3f}, relative {relative:.2e})"
        )
    if worst > args.tolerance:
        print(f"FAILED: relative difference {worst:.2e} > {args.tolerance:.0e}")
        return 1
    print("OK")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("dump", help="torchvision side: write weights, images, logits")
    d.add_argument("--out", default="/tmp/shufflenet_tv.npz")
    d.add_argument("--size", type=int, default=224)
    d.add_argument("--batch", type=int, default=2)
    d.add_argument("--seed", type=int, default=0)
    c = commands.add_parser("compare", help="keras_convzoo side: port and compare")
    c.add_argument("--npz", default="/tmp/shufflenet_tv.npz")
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    return dump(args) if args.command == "dump" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
