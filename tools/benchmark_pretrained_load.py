"""Time and peak memory to build a model with pretrained weights loaded from the cache.

For each ``NAME[.TAG]`` (default: ``imagenet``) it writes a file of the
entry's format with random weights (timm's: ``tests/weights/timm_reference.py``
in a Python with torch + timm; keras.applications': the keras model with
``weights=None`` saved as ``.h5``; entries with a published sha256, i.e.
keras' ConvNeXt files, cannot be played by a random file and are refused), serves it from a ``LocalHub`` on
127.0.0.1, fetches it once into an empty cache (``convzoo download``), then
measures in fresh processes with ``HF_HUB_OFFLINE=1``:
``create_model(name, weights=None)`` and ``create_model(name, weights=TAG)``:
wall time of the call and the process's peak resident memory
(``VmHWM``). The difference is what loading the weights costs.

Usage::

    python tools/benchmark_pretrained_load.py                      # one full-size model per family
    python tools/benchmark_pretrained_load.py convnext_xlarge resnext50_32x4d.tv_in1k --repeats 3
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = ["resnext50_32x4d", "resnext101_32x8d", "seresnet50", "seresnext101_32x4d", "mobilenetv2_140",
           "convnext_tiny.fb_in1k", "convnext_xlarge.fb_in22k_ft_in1k"]
#: ru_maxrss survives exec on Linux (a child reports its parent's peak): read the process's own VmHWM instead.
MEASURE = r"""
import json, sys, time
import keras_convzoo as kcz
name, weights = sys.argv[1], (None if sys.argv[2] == "none" else sys.argv[2])
start = time.perf_counter()
model = kcz.create_model(name, weights=weights)
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "params": model.count_params()}))
"""


def write_files(entries, directory):
    """Random-weight files of each entry's format: ``{entry.key: path}``."""
    import keras_convzoo as kcz
    from keras_convzoo.backend import keras

    paths, timm_cases = {}, []
    for entry in entries:
        spec = kcz.get_spec(entry.name)
        if entry.source == "keras":
            reference = spec.weight_formats["keras"].keras_reference(spec, entry.num_classes)
            path = os.path.join(directory, entry.filename)
            reference.save(path)
            paths[entry.key] = path
        else:
            timm_cases.append({"id": entry.key, "timm_name": f"{spec.timm_name}.{entry.tag}", "timm_kwargs": {},
                               "size": 32, "batch": 1, "seed": 0})
            paths[entry.key] = os.path.join(directory, f"{entry.key}.safetensors")
    if timm_cases:
        python = os.environ.get("KERAS_CONVZOO_TORCH_PYTHON", sys.executable)
        script = os.path.join(ROOT, "tests", "weights", "timm_reference.py")
        subprocess.run([python, script, directory, json.dumps(timm_cases)], check=True)
    keras.backend.clear_session()
    return paths


def measure(name, weights, env):
    result = subprocess.run([sys.executable, "-c", MEASURE, name, weights], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT, help="NAME or NAME.TAG (default: one per family)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement (the best is kept)")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from keras_convzoo import cli
    from keras_convzoo.testing.hub import LocalHub
    from keras_convzoo.weights import pretrained

    entries = [pretrained.resolve(m.partition(".")[0], m.partition(".")[2] or "imagenet") for m in args.models]
    hashed = [e.key for e in entries if e.sha256]
    if hashed:
        parser.error(f"{hashed} have a published sha256 that a random file cannot match; time a timm tag instead")
    with tempfile.TemporaryDirectory(prefix="convzoo_load_") as directory:
        paths = write_files(entries, directory)
        env = dict(os.environ, HF_HOME=os.path.join(directory, "hf"), KERAS_HOME=os.path.join(directory, "keras"),
                   HF_HUB_DISABLE_XET="1", no_proxy="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2")
        env.pop(pretrained.MIRROR_ENV, None)
        with LocalHub() as hub:
            for entry in entries:
                data = open(paths[entry.key], "rb").read()
                if entry.hub_id:
                    hub.add_hub_file(entry.hub_id, entry.filename, data)
                else:
                    hub.add_file(entry.download_url.split("/keras-applications/", 1)[1], data)
            env.update(HF_ENDPOINT=hub.url, KERAS_CONVZOO_KERAS_ORIGIN=hub.url)
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                for entry in entries:
                    cli.main(["download", entry.name, "--tag", entry.tag])
            finally:
                os.environ.clear()
                os.environ.update(saved)
        env["HF_HUB_OFFLINE"] = "1"
        rows = []
        for entry in entries:
            plain = min((measure(entry.name, "none", env) for _ in range(args.repeats)), key=lambda r: r["seconds"])
            cached = min((measure(entry.name, entry.tag, env) for _ in range(args.repeats)), key=lambda r: r["seconds"])
            rows.append((entry, plain, cached))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"create_model in a fresh process, weights from the cache (HF_HUB_OFFLINE=1)")
    print(f"{'weights':<34}{'params':>12}{'build s':>9}{'+load s':>9}{'peak MB':>9}{'+load MB':>10}")
    for entry, plain, cached in rows:
        print(f"{entry.key:<34}{cached['params']:>12,}{plain['seconds']:>9.1f}"
              f"{cached['seconds'] - plain['seconds']:>9.1f}{cached['peak_mb']:>9.0f}"
              f"{cached['peak_mb'] - plain['peak_mb']:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
