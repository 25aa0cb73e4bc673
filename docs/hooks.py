"""MkDocs hook: the model tables of the site, generated from the package's data files.

Nothing here is typed by hand and the tables need no TensorFlow (the package is
imported once, quietly, for mkdocstrings' API pages). The sources, all in the repository:

- ``keras_convzoo/data/models.json`` (``tools/make_model_index.py``): every
  registered variant with its family, constructor, default input, parameter
  count and MACs at the default size, paper and reference.
- ``keras_convzoo/data/pretrained.json`` (``tools/make_pretrained_table.py``):
  the pretrained weights of each variant (tags, source, license), and why a
  variant has none.
- ``tests/export/test_export_matrix.py``: which export modes the tests verify
  for each family, read from the test functions' ``export.to_*`` calls and
  their ``pytest.mark.parametrize`` lists (``ast``, the file is not run).

A page asks for a generated block with an HTML comment on a line of its own:

- ``<!-- model-table: FAMILY [FAMILY ...] -->``: paper, constructors, the
  table of the variants (name, constructor, params, MACs, default input,
  reference, pretrained tags) and the verified export modes. ``*`` lists
  every variant. Family names are compared without ``_``/``-``
  (``se_resnet`` and ``seresnet`` are the same).
- ``<!-- family-table -->``: one row per family page, with its variants and
  export modes.
- ``<!-- pretrained-table -->``: which variant has which weights.

A missing data file, an unknown family or a variant that no family page
lists fails the build with one clear error.
"""

import ast
import json
import os
import re

from mkdocs.exceptions import PluginError

#: The files the tables are made from, relative to the repository root (``mkdocs.yml``'s folder).
MODELS_JSON = os.path.join("keras_convzoo", "data", "models.json")
PRETRAINED_JSON = os.path.join("keras_convzoo", "data", "pretrained.json")
EXPORT_TESTS = os.path.join("tests", "export", "test_export_matrix.py")

_MARKER = re.compile(r"^<!--[ \t]*(model-table|family-table|pretrained-table)[ \t]*(?::[ \t]*(?P<args>[^>\n]*?))?"
                     r"[ \t]*-->[ \t]*$", re.MULTILINE)

_state = {}


# ---------------------------------------------------------------------------------------------
# Loading


def _load_json(root, relative, producer):
    path = os.path.join(root, relative)
    if not os.path.isfile(path):
        raise PluginError(f"docs/hooks.py: {relative} is missing; the model tables are generated from it. "
                          f"Create it with `python {producer}`.")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except ValueError as error:
        raise PluginError(f"docs/hooks.py: {relative} is not valid JSON: {error}") from None


def _family_key(name):
    return re.sub(r"[_\-\s]", "", name).lower()


def _models(root):
    data = _load_json(root, MODELS_JSON, "tools/make_model_index.py")
    models = data.get("models") if isinstance(data, dict) else None
    required = ("name", "family", "entrypoint", "default_size", "input_channels", "spatial_dims", "params", "macs")
    if not models:
        raise PluginError(f"docs/hooks.py: {MODELS_JSON} holds no 'models' list.")
    for model in models:
        missing = [key for key in required if key not in model]
        if missing:
            raise PluginError(f"docs/hooks.py: {MODELS_JSON}: entry {model.get('name', '?')!r} lacks {missing}.")
    return data


def _export_coverage(root):
    """``{"every": [modes], "representative": [modes], "preferred": [names]}`` from the export matrix tests."""
    path = os.path.join(root, EXPORT_TESTS)
    if not os.path.isfile(path):
        raise PluginError(f"docs/hooks.py: {EXPORT_TESTS} is missing; the 'export modes verified' notes are read "
                          "from its test functions.")
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    preferred = []
    coverage = {"MODELS": [], "REPRESENTATIVES": []}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PREFERRED" for t in node.targets):
            preferred = list(ast.literal_eval(node.value))
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        params = {}
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "parametrize":
                argname = ast.literal_eval(decorator.args[0])
                values = decorator.args[1]
                params[argname] = values.id if isinstance(values, ast.Name) else ast.literal_eval(values)
        scope = params.get("name")
        if scope not in coverage:
            continue  # a test of one fixed model, or of no registered model
        for call in ast.walk(node):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and getattr(call.func.value, "id", None) == "export"
                    and call.func.attr in ("to_tflite", "to_onnx", "to_saved_model")):
                continue
            keywords = {k.arg: k.value for k in call.keywords}
            fmt = {"to_tflite": "TFLite", "to_onnx": "ONNX", "to_saved_model": "SavedModel"}[call.func.attr]
            if call.func.attr != "to_tflite":
                modes = [fmt]
            elif "quantization" not in keywords:
                modes = ["TFLite fp32"]
            elif isinstance(keywords["quantization"], ast.Name):
                modes = [f"TFLite {q}" for q in params[keywords["quantization"].id]]
            else:
                modes = [f"TFLite {ast.literal_eval(keywords['quantization'])}"]
            for mode in modes:
                if mode not in coverage[scope]:
                    coverage[scope].append(mode)
    if not coverage["MODELS"] or not coverage["REPRESENTATIVES"] or not preferred:
        raise PluginError(f"docs/hooks.py: could not read the export modes from {EXPORT_TESTS} (expected "
                          "PREFERRED and tests parametrized over MODELS and REPRESENTATIVES that call export.to_*); "
                          "update docs/hooks.py with the test file.")
    return {"every": coverage["MODELS"], "representative": coverage["REPRESENTATIVES"], "preferred": preferred}


def _representatives(models, preferred):
    """The test's choice of one model per family (``_representatives`` in the export matrix test)."""
    chosen = {}
    for model in sorted(models, key=lambda m: m["name"]):
        family = model["family"]
        if family not in chosen or (model["name"] in preferred and chosen[family] not in preferred):
            chosen[family] = model["name"]
    return chosen


# ---------------------------------------------------------------------------------------------
# Formatting


def _count(value):
    return f"{int(value):,}"


def _macs(value):
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def _shape(dims):
    return "x".join("?" if d is None else str(d) for d in dims)


def _default_input(model):
    dims = model["spatial_dims"]
    shape = [model["default_size"]] * dims + [model["input_channels"]]
    text = _shape(shape)
    others = [d for d in model.get("accepted_spatial_dims") or () if d != dims]
    if others:
        text += " (also " + ", ".join(f"{d}D" for d in others) + ")"
    return text


def _constructor(model):
    entry = model["entrypoint"]
    return f"[`{entry}`][keras_convzoo.applications.{entry}]"


def _reference_cell(model):
    text = model.get("reference") or ""
    ref_params = model.get("reference_params")
    if model.get("matches_reference") is False:
        return f"{text} (parameter count differs)"
    if ref_params and ref_params != model["params"]["trainable"]:
        settings = model.get("reference_counted_with")
        text += f": {_count(ref_params)}" + (f" with {settings}" if settings else "")
    return text


def _weights_cell(name):
    entries = [e for e in _state["pretrained"].get("entries", []) if e["name"] == name]
    if not entries:
        return "none"
    default = next((e for e in entries if e.get("default")), entries[0])
    tags = [f"**`{default['tag']}`**"] + [f"`{e['tag']}`" for e in entries if e is not default]
    return ", ".join(tags)


def _unavailable_reason(name):
    return next((row["reason"] for row in _state["pretrained"].get("unavailable", [])
                 if row["name"] == name and row.get("tag") is None), None)


def _export_note(families):
    coverage = _state["coverage"]
    chosen = _state["representatives"]
    names = [chosen[f] for f in families if f in chosen]
    return (f"**Export modes verified** (`{EXPORT_TESTS}`, tiny twins at 32x32, fused, each file run and compared "
            f"with Keras): {', '.join(coverage['every'])} for every variant; "
            f"{', '.join(coverage['representative'])} on {', '.join(f'`{n}`' for n in names)}.")


def _select(families_arg):
    models = _state["models"]["models"]
    if families_arg.strip() == "*":
        return models, sorted({m["family"] for m in models})
    wanted = [_family_key(f) for f in families_arg.split()]
    known = {_family_key(m["family"]) for m in models}
    if not any(f in known for f in wanted):
        # A marker may name spellings that are absent (``se_resnext`` where the index files SE-ResNeXt under
        # ``se_resnet``); a page matching nothing is an error, and on_post_build checks every variant is listed.
        raise PluginError(f"docs/hooks.py: no family of {families_arg.split()} in {MODELS_JSON}, which has "
                          f"{sorted({m['family'] for m in models})}.")
    selected = [m for m in models if _family_key(m["family"]) in wanted]
    families = []
    for model in selected:
        if model["family"] not in families:
            families.append(model["family"])
    # Within a family, smallest first (the index is in name order: seresnet101 before seresnet18).
    selected.sort(key=lambda m: (families.index(m["family"]), m["params"]["total"]))
    return selected, families


def model_table(families_arg, page):
    selected, families = _select(families_arg)
    if families_arg.strip() != "*":
        _state["listed"].update(m["name"] for m in selected)
    lines = []
    if families_arg.strip() != "*":
        papers = []
        for model in selected:
            for paper in (model.get("paper") or "").split("; "):
                if paper and paper not in papers:
                    papers.append(paper)
        constructors = []
        for model in selected:
            if model["entrypoint"] not in constructors:
                constructors.append(model["entrypoint"])
        lines.append(f"**Paper{'s' if len(papers) > 1 else ''}:** " + "; ".join(papers) + "  ")
        lines.append("**Constructors:** " + ", ".join(
            f"[`{c}`][keras_convzoo.applications.{c}]" for c in constructors)
            + ", or `create_model(name)` with a registry name below.")
        lines.append("")
    lines += [
        "| name | constructor | params | MACs | default input | reference | pretrained weights |",
        "|---|---|---:|---:|---|---|---|",
    ]
    reasons = {}
    for model in selected:
        params = model["params"]
        cell = _count(params["trainable"])
        if params.get("total") not in (None, params["trainable"]):
            cell += f" ({_count(params['total'])} total)"
        macs = _macs(model["macs"])
        macs_shape = model.get("macs_input_shape")
        if macs_shape and list(macs_shape[:-1]) != [model["default_size"]] * model["spatial_dims"]:
            macs += f" at {_shape(macs_shape)}"
        reason = _unavailable_reason(model["name"])
        if reason and not any(e["name"] == model["name"] for e in _state["pretrained"].get("entries", [])):
            reasons.setdefault(reason, []).append(model["name"])
        lines.append(f"| `{model['name']}` | {_constructor(model)} | {cell} | {macs} | {_default_input(model)} | "
                     f"{_reference_cell(model)} | {_weights_cell(model['name'])} |")
    lines.append("")
    lines.append("Params: trainable parameters at the constructor's defaults (1000 classes), with the total where "
                 "BatchNormalization statistics add non-trainable ones. Reference: the implementation whose "
                 "trainable parameter count the variant equals (tested; the count and settings are given where "
                 "they differ from the defaults). MACs: multiply-accumulates at the default input "
                 "(`profile.count_flops`). Pretrained weights: the **bold** tag is `weights=\"imagenet\"`; "
                 "see [Pretrained weights](" + _relative(page, "guides/pretrained-weights.md") + ").")
    if families_arg.strip() != "*":
        lines += ["", _export_note(families)]
    for reason, names in reasons.items():
        lines += ["", f"No pretrained weights for {', '.join(f'`{n}`' for n in names)}: {reason}."]
    generated = _state["models"].get("generated_by", "tools/make_model_index.py")
    lines += ["", f"<sub>Generated at build time from `{MODELS_JSON}` ({generated}) and `{PRETRAINED_JSON}`.</sub>"]
    return "\n".join(lines)


def _relative(page, target):
    """A link from ``page`` to the docs file ``target`` (MkDocs resolves ``.md`` links)."""
    src = os.path.dirname(page.file.src_uri)
    return os.path.relpath(target, src or ".").replace(os.sep, "/")


def family_table(page):
    pages = _state["family_pages"]
    lines = ["| family | variants | export modes verified |", "|---|---|---|"]
    coverage = _state["coverage"]
    for uri, title, families, names in pages:
        variants = ", ".join(f"`{name}`" for name in names)
        reps = ", ".join(f"`{_state['representatives'][f]}`" for f in families if f in _state["representatives"])
        modes = (f"{', '.join(coverage['every'])}: every variant; {', '.join(coverage['representative'])}: {reps}")
        lines.append(f"| [{title}]({_relative(page, uri)}) | {variants} | {modes} |")
    return "\n".join(lines)


def pretrained_table():
    table = _state["pretrained"]
    lines = ["| variant | `weights=\"imagenet\"` | other tags | license of the default |", "|---|---|---|---|"]
    names = sorted({e["name"] for e in table.get("entries", [])}
                   | {r["name"] for r in table.get("unavailable", []) if r.get("tag") is None})
    for name in names:
        rows = [e for e in table.get("entries", []) if e["name"] == name]
        if not rows:
            lines.append(f"| `{name}` | none: {_unavailable_reason(name)} | | |")
            continue
        default = next((r for r in rows if r.get("default")), rows[0])
        others = ", ".join(f"`{r['tag']}`" for r in rows if r is not default)
        lines.append(f"| `{name}` | {default['source']} `{default['tag']}` | {others} | {default.get('license', '')} |")
    lines += ["", f"<sub>Generated at build time from `{PRETRAINED_JSON}` "
              f"({table.get('generated_by', 'tools/make_pretrained_table.py')}).</sub>"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# MkDocs events


def on_config(config, **kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # mkdocstrings imports the package for the API pages (its constructors are made at run time): import it
    # here first with TensorFlow's C++ start-up lines kept out of the build log (replayed if the import fails)
    from keras_convzoo_cli import quiet_native_logs

    with quiet_native_logs():
        import keras_convzoo  # noqa: F401
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    _state.clear()
    _state["models"] = _models(root)
    _state["pretrained"] = _load_json(root, PRETRAINED_JSON, "tools/make_pretrained_table.py")
    _state["coverage"] = _export_coverage(root)
    _state["representatives"] = _representatives(_state["models"]["models"], _state["coverage"]["preferred"])
    _state["listed"] = set()
    # The family pages: every page with a model-table marker naming families (read before rendering,
    # so that the overview table can list them whatever the build order).
    family_pages = []
    docs_dir = config.docs_dir
    for folder, _, names in os.walk(docs_dir):
        for filename in sorted(names):
            if not filename.endswith(".md"):
                continue
            path = os.path.join(folder, filename)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), filename)
            for match in _MARKER.finditer(text):
                if match.group(1) == "model-table" and (match.group("args") or "").strip() not in ("", "*"):
                    selected, families = _select(match.group("args"))
                    family_pages.append((os.path.relpath(path, docs_dir).replace(os.sep, "/"), title,
                                         families, [m["name"] for m in selected]))
    _state["family_pages"] = sorted(family_pages)
    return config


def on_page_markdown(markdown, page, **kwargs):
    def replace(match):
        kind, args = match.group(1), match.group("args") or ""
        if kind == "model-table":
            if not args.strip():
                raise PluginError(f"docs/hooks.py: {page.file.src_uri}: model-table needs families or '*'.")
            block = model_table(args, page)
        elif kind == "family-table":
            block = family_table(page)
        else:
            block = pretrained_table()
        return f"\n{block}\n"  # blank lines around: a table must not run into the next line

    return _MARKER.sub(replace, markdown)


def on_post_build(**kwargs):
    names = {m["name"] for m in _state["models"]["models"]}
    unlisted = sorted(names - _state["listed"])
    if unlisted:
        raise PluginError(f"docs/hooks.py: no family page lists {unlisted}: add their family to a page's "
                          "'<!-- model-table: ... -->' marker.")
