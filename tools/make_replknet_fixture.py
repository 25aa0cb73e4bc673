"""Writes tests/fixtures/replknet_official_tiny.npz from the official RepLKNet code.

Run in a PyTorch environment (torch + timm) with a checkout of
DingXiaoH/RepLKNet-pytorch; nothing of that code is copied here, its module
is imported from the given directory:

    python tools/make_replknet_fixture.py --official-dir /path/to/RepLKNet-pytorch

The fixture holds a tiny RepLKNet's ``state_dict()`` (PyTorch names,
channels-first), a random input batch of an odd size (37x45: exercises the
symmetric padding of the stride-2 convs) and the eval-mode logits. BN
statistics and affine parameters are randomised so a wrong mapping shows.
``tests/applications/test_replknet_parity.py`` checks our model against it.
"""

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np

TINY = dict(large_kernel_sizes=[7, 7, 5, 3], layers=[1, 1, 2, 1], channels=[8, 16, 24, 32], small_kernel=3)
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "replknet_official_tiny.npz"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-dir", required=True, help="checkout of DingXiaoH/RepLKNet-pytorch")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    import torch

    sys.path.insert(0, args.official_dir)
    import replknet  # the official module

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # the official blocks print their drop path
        model = replknet.RepLKNet(drop_path_rate=0.0, num_classes=10, use_sync_bn=False, **TINY)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        y = model(x).numpy()
    state = {
        f"state/{k}": v.numpy().astype(np.float32)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    np.savez_compressed(args.out, input=x.numpy(), output=y, **state)
    print(f"wrote {args.out}: {len(state)} tensors, logits scale {np.abs(y).max():.3f}")


if __name__ == "__main__":
    main()
