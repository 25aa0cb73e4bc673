"""Builds the sdist and wheel, checks them, and smoke-tests the wheel in a clean virtualenv outside the repo.

Steps (each prints one line; the first failure exits non-zero):

1. ``python -m build --outdir DIR``: the sdist, then the wheel built from
   the sdist (so a file missing from the sdist fails here).
2. ``twine check``: the metadata and README render as PyPI would.
3. The wheel's file list: the package, its data files (model index,
   pretrained table, ImageNet class names) and the console script's module;
   no tests, tools or examples.
4. A fresh virtualenv in a temporary folder, ``pip install WHEEL`` (its
   dependencies from the package index or pip's cache), then, from a folder
   outside the repository: ``convzoo list`` and ``convzoo info`` (the console
   script), and a script that imports the package, checks its version,
   builds a small model, predicts, decodes the predictions with the shipped
   class names, and saves and reloads it as ``.keras``.

Usage::

    python tools/check_wheel.py                 # builds into a temporary folder
    python tools/check_wheel.py --dist dist     # keeps the files in dist/
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Files the wheel must hold (package data read at run time included).
REQUIRED = (
    "keras_convzoo/__init__.py",
    "keras_convzoo/data/models.json",
    "keras_convzoo/data/pretrained.json",
    "keras_convzoo/data/imagenet_classes.json",
    "keras_convzoo_cli.py",
)

SMOKE = r"""
import os, sys, tempfile
import numpy as np
import keras
import keras_convzoo as kcz

assert not kcz.__file__.startswith(sys.argv[1]), f"imported from the repository: {kcz.__file__}"
assert kcz.__version__ == sys.argv[2], (kcz.__version__, sys.argv[2])
model = kcz.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None)
probs = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), verbose=0)
assert probs.shape == (2, 1000) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
top = kcz.decode_predictions(probs, top=1)[0][0]
import importlib.resources, json
classes = json.loads((importlib.resources.files("keras_convzoo") / "data" / "imagenet_classes.json").read_text())
assert list(top[:2]) == classes[str(int(np.argmax(probs[0])))], (top, np.argmax(probs[0]))
path = os.path.join(tempfile.mkdtemp(), "m.keras")
model.save(path)
again = keras.saving.load_model(path)
np.testing.assert_array_equal(again.predict(np.zeros((1, 32, 32, 3)), verbose=0),
                              model.predict(np.zeros((1, 32, 32, 3)), verbose=0))
print("smoke ok:", kcz.__file__, "top-1 class", top[1])
"""


def _run(cmd, step, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"check_wheel: {step} failed (exit {result.returncode}): {' '.join(cmd)}")
    return result.stdout


def _version():
    with open(os.path.join(ROOT, "keras_convzoo", "__init__.py"), encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dist", help="folder for the built files (default: a temporary one)")
    args = parser.parse_args(argv)
    version = _version()
    with tempfile.TemporaryDirectory(prefix="check_wheel_") as work:
        dist = os.path.abspath(args.dist) if args.dist else os.path.join(work, "dist")
        os.makedirs(dist, exist_ok=True)
        _run([sys.executable, "-m", "build", "--outdir", dist, ROOT], "python -m build")
        wheels = glob.glob(os.path.join(dist, f"keras_convzoo-{version}-*.whl"))
        sdists = glob.glob(os.path.join(dist, f"keras_convzoo-{version}.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            raise SystemExit(f"check_wheel: expected one wheel and one sdist of {version} in {dist}, found "
                             f"{sorted(os.listdir(dist))}")
        print(f"built {os.path.basename(sdists[0])} and {os.path.basename(wheels[0])}")
        _run([sys.executable, "-m", "twine", "check", "--strict", wheels[0], sdists[0]], "twine check")
        print("twine check --strict: PASSED")
        names = zipfile.ZipFile(wheels[0]).namelist()
        missing = [f for f in REQUIRED if f not in names]
        stray = sorted({n.split("/")[0] for n in names} & {"tests", "tools", "examples", "docs"})
        if missing or stray:
            raise SystemExit(f"check_wheel: the wheel lacks {missing} / holds {stray}")
        print(f"wheel holds {len(names)} files, package data included, no tests/tools/examples")
        venv = os.path.join(work, "venv")
        _run([sys.executable, "-m", "venv", venv], "python -m venv")
        python = os.path.join(venv, "bin", "python")
        _run([python, "-m", "pip", "install", "--quiet", wheels[0]], "pip install the wheel")
        print("installed the wheel in a fresh virtualenv")
        outside = os.path.join(work, "elsewhere")
        os.makedirs(outside)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        convzoo = os.path.join(venv, "bin", "convzoo")
        listing = _run([convzoo, "list", "resnext*"], "convzoo list", cwd=outside, env=env)
        if "resnext50_32x4d" not in listing:
            raise SystemExit(f"check_wheel: convzoo list printed {listing!r}")
        info = _run([convzoo, "info", "mobilenetv2_100"], "convzoo info", cwd=outside, env=env)
        if "3,504,872" not in info:
            raise SystemExit(f"check_wheel: convzoo info printed {info!r}")
        print("convzoo list / info: OK")
        print(_run([python, "-c", SMOKE, ROOT, version], "smoke script", cwd=outside, env=env).strip())
    print("check_wheel: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
