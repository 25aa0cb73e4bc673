"""Generates keras_convzoo/data/pretrained.json: which variant has which pretrained weights.

Every row comes from upstream metadata, never typed here:

- timm: ``timm.models.get_arch_pretrained_cfgs(arch)`` of the installed timm
  (hub id, file, license, mean/std, interpolation, crop, input size,
  classes); upstream's order, its first tag is timm's default. A tag is
  offered only when the timm model it names has the state-dict keys and
  shapes of the architecture our variant reproduces (checked here on
  PyTorch's meta device, outside the classifier); the others are listed as
  unavailable with the keys that differ.
- torchvision: ``torchvision.models.get_model_weights(name)`` of the installed
  torchvision (URL, whose file name carries the first hex digits of the
  file's sha256 as torch.hub checks them, transforms, classes).
- keras.applications: ``BASE_WEIGHT(S)_PATH``, the file naming and
  ``WEIGHTS_HASHES`` of ``keras.src.applications.mobilenet_v2`` /
  ``convnext`` of the installed Keras (224 px files with the top).

``weights="imagenet"`` (``default``) is keras.applications' file where
keras.applications has the variant (the drop-in promise: equal outputs), else
timm's default tag when it has 1000 classes.

timm and torchvision run in a child process (``--timm-part``): timm imports Triton, whose
native library crashes when it loads after TensorFlow's.

Usage::

    python tools/make_pretrained_table.py            # writes the package data (the docs site renders its table)
    python tools/make_pretrained_table.py --check    # exits 1 if either is out of date
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "keras_convzoo", "data", "pretrained.json")

#: Licenses of keras.applications' weight files, which keras' code does not state: the upstream releases'
#: (MobileNetV2: tensorflow/models, Apache-2.0; ConvNeXt: facebookresearch/ConvNeXt, MIT).
KERAS_LICENSES = {"mobilenetv2": "apache-2.0", "convnext": "mit"}
#: torchvision's license (BSD-3-Clause), which its weights metadata does not state.
TORCHVISION_LICENSE = "bsd-3-clause"
#: Families whose upstream weights cannot be fetched by a stable URL with a hash, and why.
NOT_AVAILABLE = {
    "replknet": ("official", "the official RepLKNet release links Google Drive / Baidu pages, not a stable URL "
                             "with a published hash; port a downloaded checkpoint with weights=FILE"),
    "ccnn": ("official", "the official CCNN repository publishes no checkpoints (trained runs stay in the "
                         "authors' Weights & Biases projects); port your own with weights=FILE"),
}


def torchvision_part(names):
    """Child process: torchvision's weights of each model, in its enum's order."""
    import re

    import torchvision

    result = {}
    for name in names:
        rows = []
        for weights in torchvision.models.get_model_weights(name):
            transforms = weights.transforms()
            crop, resize = int(transforms.crop_size[0]), int(transforms.resize_size[0])
            filename = weights.url.rsplit("/", 1)[1]
            prefix = re.search(r"-([0-9a-f]{6,})\.pth$", filename)
            rows.append({"tag": weights.name.lower(), "url": weights.url, "filename": filename,
                         "sha256_prefix": prefix.group(1) if prefix else None,
                         "num_classes": len(weights.meta["categories"]), "input_size": [crop, crop],
                         "crop_pct": round(crop / resize, 4), "interpolation": transforms.interpolation.value,
                         "mean": list(transforms.mean), "std": list(transforms.std),
                         "origin_url": weights.meta.get("recipe")})
        result[name] = rows
    return {"torchvision_version": torchvision.__version__, "models": result}


def timm_part(arch_names):
    """Child process: timm's pretrained configs of each architecture, with a key check per tag."""
    import timm
    import torch
    from timm.models import get_arch_pretrained_cfgs

    def keys(model_name, **kwargs):
        with torch.device("meta"):
            model = timm.create_model(model_name, pretrained=False, **kwargs)
        head = model.pretrained_cfg.get("classifier") or ""
        heads = (head,) if isinstance(head, str) else tuple(head)
        state = model.state_dict()
        return {k: tuple(v.shape) for k, v in state.items()
                if not any(k.startswith(h + ".") for h in heads if h) and not k.endswith("num_batches_tracked")}

    result = {"timm_version": timm.__version__, "archs": {}}
    for arch in arch_names:
        reference = keys(arch)
        rows = []
        for index, (key, cfg) in enumerate(get_arch_pretrained_cfgs(arch).items()):
            cfg = cfg.to_dict()
            tag = key.split(".", 1)[1] if "." in key else cfg.get("tag") or ""
            try:
                tagged = keys(f"{arch}.{tag}")
                differ = sorted(set(tagged.items()) ^ set(reference.items()))
            except Exception as error:  # an architecture timm builds differently for that tag
                differ = [f"{type(error).__name__}: {error}"]
            rows.append({"tag": tag, "timm_default": index == 0, "cfg": _plain(cfg),
                         "differ": [str(d) for d in differ[:4]]})
        result["archs"][arch] = rows
    return result


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def registry_part():
    """This process: the registry (variants, families, sources) and keras.applications' weight tables."""
    import keras

    import keras_convzoo as kcz
    from keras.src.applications import convnext as keras_convnext
    from keras.src.applications import mobilenet_v2 as keras_mobilenet_v2

    variants = []
    for name in kcz.list_models():
        spec = kcz.get_spec(name)
        keras_file = None
        if "keras" in spec.weight_formats and spec.family == "mobilenetv2":
            filename = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(spec.config.alpha)}_224.h5"
            keras_file = {"url": keras_mobilenet_v2.BASE_WEIGHT_PATH + filename, "filename": filename,
                          "sha256": None, "notes": "keras.applications publishes no hash for MobileNetV2 files"}
        elif "keras" in spec.weight_formats and spec.family == "convnext":
            filename = f"{name}.h5"
            keras_file = {"url": keras_convnext.BASE_WEIGHTS_PATH + filename, "filename": filename,
                          "sha256": keras_convnext.WEIGHTS_HASHES[name][0], "notes": ""}
        variants.append({
            "name": name, "family": spec.family, "timm_name": spec.timm_name,
            "sources": sorted(spec.weight_formats), "keras_file": keras_file,
            "keras_preprocessing": (spec.weight_formats["keras"].preprocessing if keras_file else None),
        })
    return variants, keras.__version__


def build_table(variants, keras_version, timm_info):
    entries, unavailable = [], []
    for variant in variants:
        name = variant["name"]
        rows = []
        if variant["keras_file"]:
            keras_file = variant["keras_file"]
            rows.append({
                "name": name, "tag": "keras", "source": "keras", "default": False,
                "filename": keras_file["filename"], "url": keras_file["url"], "sha256": keras_file["sha256"],
                "license": KERAS_LICENSES[variant["family"]], "num_classes": 1000, "input_size": [224, 224],
                "preprocessing": variant["keras_preprocessing"], "notes": keras_file["notes"],
                "origin_url": keras_file["url"],
            })
        for row in timm_info["archs"].get(variant["timm_name"] or "", []):
            cfg = row["cfg"]
            if row["tag"] == "untrained":  # timm's placeholder for an architecture without weights
                continue
            if not cfg.get("hf_hub_id"):
                unavailable.append({"name": name, "source": "timm", "tag": row["tag"],
                                    "reason": "timm hosts this tag outside the Hugging Face hub"})
                continue
            if row["differ"]:
                unavailable.append({"name": name, "source": "timm", "tag": row["tag"],
                                    "reason": "timm builds another architecture for this tag: " + "; ".join(row["differ"])})
                continue
            rows.append({
                "name": name, "tag": row["tag"], "source": "timm", "default": False,
                "hub_id": cfg["hf_hub_id"], "filename": cfg.get("hf_hub_filename") or "model.safetensors",
                "license": cfg.get("license") or "unknown", "num_classes": int(cfg.get("num_classes") or 0),
                "input_size": list(cfg["input_size"][1:]), "crop_pct": cfg.get("crop_pct"),
                "crop_mode": cfg.get("crop_mode"), "interpolation": cfg.get("interpolation"),
                "mean": list(cfg["mean"]), "std": list(cfg["std"]), "preprocessing": "torch",
                "origin_url": cfg.get("url") or cfg.get("origin_url"),
                "notes": "timm's default tag" if row["timm_default"] else "",
            })
        for row in timm_info.get("torchvision", {}).get(name, []) if "torchvision" in variant["sources"] else []:
            rows.append(dict(row, name=name, source="torchvision", default=False, preprocessing="torch",
                             license=TORCHVISION_LICENSE, crop_mode="center",
                             notes="torch.hub checks the sha256 prefix in the file name"))
        if not rows:
            source, reason = NOT_AVAILABLE.get(variant["family"], ("timm", "timm publishes no weights for it"))
            unavailable.append({"name": name, "source": source, "tag": None, "reason": reason})
            continue
        default = next((r for r in rows if r["source"] == "keras"), None)
        default = default or next((r for r in rows if r["num_classes"] == 1000), None)
        if default is not None:
            default["default"] = True
        entries.extend(rows)
    return {
        "generated_by": "tools/make_pretrained_table.py",
        "generated_from": {"timm": timm_info["timm_version"], "torchvision": timm_info.get("torchvision_version"),
                           "keras": keras_version},
        "entries": entries,
        "unavailable": unavailable,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the package data is out of date")
    parser.add_argument("--timm-part", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timm_part:
        request = json.loads(args.timm_part)
        info = timm_part(request["timm"])
        vision = torchvision_part(request["torchvision"])
        info.update(torchvision=vision["models"], torchvision_version=vision["torchvision_version"])
        print(json.dumps(info))
        return 0
    variants, keras_version = registry_part()
    request = {"timm": sorted({v["timm_name"] for v in variants if v["timm_name"]}),
               "torchvision": [v["name"] for v in variants if "torchvision" in v["sources"]]}
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--timm-part", json.dumps(request)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        return 1
    table = build_table(variants, keras_version, json.loads(result.stdout.strip().splitlines()[-1]))
    text = json.dumps(table, indent=1) + "\n"
    if args.check:
        with open(OUT, encoding="utf-8") as handle:
            stale = handle.read() != text
        print("out of date" if stale else "up to date")
        return 1 if stale else 0
    with open(OUT + ".part", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(OUT + ".part", OUT)
    print(f"{OUT}: {len(table['entries'])} entries, {len(table['unavailable'])} unavailable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
