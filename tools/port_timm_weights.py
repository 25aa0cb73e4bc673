"""Ports timm ImageNet weights of a registered model to a ``.weights.h5`` file.

Usage:
    python tools/port_timm_weights.py NAME [--checkpoint FILE] [--out FILE.weights.h5]

Without ``--checkpoint`` it creates timm's model with ``pretrained=True`` (needs
torch, timm and a network); with one it reads the file (``.safetensors`` and
``.npz`` need no torch; ``.pth``/``.bin`` do). The default output is
``$KERAS_CONVZOO_HOME/NAME.weights.h5`` (``~/.keras/convzoo``), which
``weights="imagenet"`` loads. Same as ``convzoo port-timm``; see
``keras_convzoo.weights.convert_timm_weights``.

Example:
    python tools/port_timm_weights.py seresnet50 --checkpoint model.safetensors --out se50.weights.h5
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_convzoo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["port-timm"] + sys.argv[1:]))
