"""Numerical parity of keras_convzoo's ShuffleNetV2 with torchvision's, in two steps.

The PyTorch and TensorFlow environments are separate, so the check runs twice:

1. ``dump`` (in an environment with torch + torchvision, no TensorFlow needed):
   builds torchvision's ``shufflenet_v2_x*`` with random weights (BN
   statistics and affine parameters randomised too, so no BN is the
   identity), runs it in eval mode on seeded random images and writes the
   state dicts, the images (NHWC) and the logits to an ``.npz``.
2. ``compare`` (in the keras_convzoo environment, no torch needed): builds
   ``kcz.ShuffleNetV2(width, classifier_activation=None)`` in the family's
   torchvision layout, ports the state dict with the family's key map
   (``shufflenet_v2.TORCHVISION_FORMAT``, i.e. ``torchvision_module_name``,
   through ``keras_convzoo.weights.port_state_dict``: all or nothing, every
   tensor used), runs the same images and prints the max abs / relative
   logit difference per width; exits 1 if any relative difference exceeds
   ``--tolerance``.

A torchvision ``.pth`` file loads the same way without this tool:
``kcz.ShuffleNetV2(1.0, weights="shufflenet_v2_x1_0.pth")``.

Usage::

    /work/venv-torch/bin/python tools/check_shufflenet_torchvision.py dump --out /tmp/shufflenet_tv.npz
    /work/venv/bin/python tools/check_shufflenet_torchvision.py compare --npz /tmp/shufflenet_tv.npz
"""

import argparse
import sys

import numpy as np

WIDTH_NAMES = {0.5: "x0_5", 1.0: "x1_0", 1.5: "x1_5", 2.0: "x2_0"}

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


def compare(args):
    import keras_convzoo as kcz
    from keras_convzoo.weights import port_state_dict

    data = np.load(args.npz)
    images = data["images"]
    worst = 0.0
    for width, suffix in WIDTH_NAMES.items():
        prefix = f"{suffix}/"
        state = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix) and k != f"{suffix}/logits"}
        weight_format = kcz.get_spec(f"shufflenet_v2_{suffix}").weight_formats["torchvision"]
        model = kcz.ShuffleNetV2(
            width, classifier_activation=None, input_shape=images.shape[1:], **weight_format.config
        )
        port_state_dict(model, state, weight_format.key_map, "torchvision")
        ported = len({key.rpartition(".")[0] for key in state})
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
