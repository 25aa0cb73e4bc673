"""Writes timm reference models with random weights and their logits (run with a Python that has torch + timm).

Usage: python timm_reference.py OUT_DIR CASES_JSON

``CASES_JSON`` is a list of ``{"id", "timm_name", "timm_kwargs", "size", "batch", "seed"}``.
For each case: ``timm.create_model(timm_name, pretrained=False, **timm_kwargs)``
with a fixed seed, BatchNorm/LayerNorm affine parameters and BatchNorm running
statistics randomised (so they matter; a residual
branch's last BN, zero at init, gets a small scale), ConvNeXt layer scales made O(1), eval
mode; random NHWC images of the given size go through it. Writes
``OUT_DIR/<id>.safetensors`` (the state dict) and ``OUT_DIR/<id>.npz``
(``inputs`` NHWC, ``logits``). Imported by no test: the tests run it in a
subprocess so that torch never loads next to TensorFlow.
"""

import json
import os
import sys
import time

import numpy as np
import timm
import torch
from safetensors.torch import save_file


def randomize(model, seed):
    """Makes every normalisation and layer scale matter (timm's init leaves them near identity)."""
    generator = torch.Generator().manual_seed(seed)

    def fill(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))

    def normal(tensor, std):
        tensor.copy_(std * torch.randn(tensor.shape, generator=generator))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                if torch.all(module.weight == 0):  # a residual branch's last BN (zero_init_last):
                    fill(module.weight, 0.05, 0.25)  # small, so 150 blocks keep the logits O(1)
                else:
                    fill(module.weight, 0.5, 1.5)
                normal(module.bias, 0.1)
                normal(module.running_mean, 0.1)
                fill(module.running_var, 0.5, 1.5)
            elif isinstance(module, torch.nn.LayerNorm):
                fill(module.weight, 0.5, 1.5)
                normal(module.bias, 0.1)
        for name, parameter in model.named_parameters():
            if name.endswith("gamma"):  # ConvNeXt layer scale, 1e-6 at init
                fill(parameter, 0.2, 0.6)


def main(out_dir, cases):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for case in cases:
        start = time.time()
        torch.manual_seed(case["seed"])
        model = timm.create_model(case["timm_name"], pretrained=False, **case.get("timm_kwargs", {}))
        randomize(model, case["seed"] + 1)
        model.eval()
        rng = np.random.default_rng(case["seed"] + 2)
        inputs = rng.standard_normal((case["batch"], case["size"], case["size"], 3)).astype("float32")
        with torch.no_grad():
            logits = model(torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()).numpy()
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out_dir, f"{case['id']}.safetensors"))
        np.savez(os.path.join(out_dir, f"{case['id']}.npz"), inputs=inputs, logits=logits)
        params = sum(p.numel() for p in model.parameters())
        print(f"{case['id']}: {params:,} params, logits std {logits.std():.3g}, {time.time() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
