"""weights="imagenet" and upstream tags: downloaded from a local hub, ported without torch, equal to the references.

A ``LocalHub`` on 127.0.0.1 plays the Hugging Face hub (``HF_ENDPOINT``) and
keras.applications' bucket (``KERAS_CONVZOO_KERAS_ORIGIN``). It serves the
state dicts of timm models with random weights and randomised normalisation
statistics (written in the torch subprocess, ``timm_reference.py``) and
keras.applications models with random weights and BN statistics saved in
keras' ``.h5`` format. Nothing reaches the internet.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import cli
from keras_convzoo.backend import LEGACY_KERAS, keras
from keras_convzoo.testing import randomize_batch_norms
from keras_convzoo.testing.hub import LocalHub
from keras_convzoo.weights import pretrained

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(LEGACY_KERAS, reason="references are Keras 3 keras.applications models"),
]

ROOT = Path(__file__).resolve().parents[2]
USER_SCRIPT = Path(__file__).with_name("_pretrained_user.py")
TOLERANCE = 1e-4
SIZE = 64
#: One timm-hosted model per family: registry name -> tag ("imagenet" where timm's tag is the default).
TIMM_CASES = {"resnext50_32x4d": "imagenet", "mobilenetv2_050": "lamb_in1k", "convnext_tiny": "fb_in1k"}


def _timm_case(name):
    """The reference case of test_port_timm.py (same id: made once per session)."""
    return {"id": name, "timm_name": kcz.get_spec(name).timm_name, "timm_kwargs": {}, "size": SIZE, "batch": 2,
            "seed": 0}


def _keras_mobilenet_file(directory):
    """keras.applications MobileNetV2(alpha=0.35) with random weights, saved as keras' .h5; images and logits."""
    reference = keras.applications.MobileNetV2(alpha=0.35, weights=None, classifier_activation=None)
    randomize_batch_norms(reference, 3)
    path = directory / "keras_mobilenetv2_035.h5"
    reference.save(path)
    images = np.random.default_rng(4).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    logits = reference(keras.applications.mobilenet_v2.preprocess_input(images.copy())).numpy()
    np.savez(directory / "keras_mobilenetv2_035.npz", inputs=images, logits=logits)
    return path


def _start_hub(refs, keras_file):
    hub = LocalHub().start()
    for name, tag in TIMM_CASES.items():
        entry = pretrained.resolve(name, tag)
        hub.add_hub_file(entry.hub_id, entry.filename, (refs / f"{name}.safetensors").read_bytes())
    keras_entry = pretrained.resolve("mobilenetv2_035", "imagenet")
    hub.add_file(f"mobilenet_v2/{keras_entry.filename}", keras_file.read_bytes())
    return hub


@pytest.fixture(scope="module")
def served(timm_references, tmp_path_factory):
    """A running LocalHub with the timm and keras files, and where they came from."""
    refs = timm_references([_timm_case(name) for name in TIMM_CASES])
    directory = tmp_path_factory.mktemp("served")
    keras_file = _keras_mobilenet_file(directory)
    hub = _start_hub(refs, keras_file)
    yield {"hub": hub, "refs": refs, "dir": directory, "keras_file": keras_file}
    hub.stop()


def _environment(hub_url, cache, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TF_USE_LEGACY_KERAS"}
    env.update(HF_HOME=str(cache / "hf"), KERAS_HOME=str(cache / "keras"), HF_HUB_DISABLE_XET="1",
               no_proxy="127.0.0.1", KERAS_CONVZOO_KERAS_ORIGIN=hub_url, HF_ENDPOINT=hub_url, **extra)
    return env


def _run_user(cases, out, env):
    result = subprocess.run([sys.executable, str(USER_SCRIPT), json.dumps(cases), str(out)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_download_port_and_offline_reload_equal_references_without_torch(served, tmp_path):
    refs = served["refs"]
    hub = _start_hub(refs, served["keras_file"])  # this test stops it
    cases = [{"id": name, "name": name, "weights": tag, "kwargs": {"input_shape": (SIZE, SIZE, 3)},
              "inputs": str(refs / f"{name}.npz"), "preprocess": False} for name, tag in TIMM_CASES.items()]
    cases.append({"id": "keras", "name": "mobilenetv2_035", "weights": "imagenet", "kwargs": {},
                  "inputs": str(served["dir"] / "keras_mobilenetv2_035.npz"), "preprocess": True})
    expected = {name: np.load(refs / f"{name}.npz")["logits"] for name in TIMM_CASES}
    expected["keras"] = np.load(served["dir"] / "keras_mobilenetv2_035.npz")["logits"]

    first = _run_user(cases, tmp_path / "first.npz", _environment(hub.url, tmp_path))
    assert first["torch_imported"] is False
    assert first["tags"] == {"resnext50_32x4d": "resnext50_32x4d.a1h_in1k", "mobilenetv2_050": "mobilenetv2_050.lamb_in1k",
                             "convnext_tiny": "convnext_tiny.fb_in1k", "keras": "mobilenetv2_035.keras"}
    with np.load(tmp_path / "first.npz") as outputs:
        for case_id, logits in expected.items():
            assert logits.std() > 0.05, case_id  # not a flat output
            np.testing.assert_allclose(outputs[case_id], logits, atol=TOLERANCE, rtol=0, err_msg=case_id)
    downloads = [path for method, path in hub.requests
                 if method == "GET" and ("/resolve/" in path or path.endswith(".h5"))]
    assert len(downloads) == len(set(downloads)) == 4  # one per file, each fetched once

    # a second process: the server gone, HF_HUB_OFFLINE=1, everything from the caches
    url = hub.url
    hub.stop()
    second = _run_user(cases, tmp_path / "second.npz", _environment(url, tmp_path, HF_HUB_OFFLINE="1"))
    assert second["torch_imported"] is False
    with np.load(tmp_path / "first.npz") as a, np.load(tmp_path / "second.npz") as b:
        for case_id in expected:
            np.testing.assert_array_equal(a[case_id], b[case_id])


@pytest.fixture
def caches(tmp_path, monkeypatch, served):
    """This process pointed at the local hub, with empty caches of its own."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HF_ENDPOINT", served["hub"].url)
    monkeypatch.setenv("KERAS_CONVZOO_KERAS_ORIGIN", served["hub"].url)
    monkeypatch.delenv(pretrained.MIRROR_ENV, raising=False)
    return tmp_path


def _cached_files(root):
    """Weight files in a cache: keras' files, the hub's blobs and snapshot links (not its lock or ref files)."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if (p.is_file() or p.is_symlink()) and not p.name.endswith((".lock", ".json", ".TAG"))
                  and "refs" not in p.parts and ".locks" not in p.parts)


def test_corrupted_hub_download_is_refused_and_removed(caches, served):
    hub = served["hub"]
    entry = pretrained.resolve("mobilenetv2_100", "ra_in1k")
    hub.add_hub_file(entry.hub_id, entry.filename, (served["refs"] / "mobilenetv2_050.safetensors").read_bytes())
    hub.corrupt(entry.hub_id, entry.filename, mode="flip")
    with pytest.raises(pretrained.CorruptDownloadError, match=r"mobilenetv2_100\.ra_in1k.*do not match their sha256"):
        kcz.MobileNetV2(alpha=1.0, weights="ra_in1k")
    assert _cached_files(caches / "hf") == []  # neither the blob nor the snapshot link is left
    hub.corrupt(entry.hub_id, entry.filename, mode="truncate")
    with pytest.raises(pretrained.CorruptDownloadError, match="was truncated.*Consistency check failed"):
        kcz.MobileNetV2(alpha=1.0, weights="ra_in1k")
    assert _cached_files(caches / "hf") == []


def test_truncated_keras_file_is_refused_and_removed(caches, served, tmp_path):
    hub = served["hub"]
    entry = pretrained.resolve("mobilenetv2_075", "imagenet")  # keras publishes no hash for MobileNetV2 files
    data = (served["dir"] / "keras_mobilenetv2_035.h5").read_bytes()
    hub.add_file(f"mobilenet_v2/{entry.filename}", data[: len(data) // 2])
    with pytest.raises(pretrained.CorruptDownloadError, match=f"{entry.filename}.*removed"):
        kcz.MobileNetV2(alpha=0.75, weights="imagenet")
    assert _cached_files(caches / "keras") == []


def test_keras_convnext_equals_keras_applications_and_hash_is_checked(caches, served, monkeypatch):
    hub = served["hub"]
    reference = keras.applications.ConvNeXtTiny(weights=None, classifier_activation=None)
    rng = np.random.default_rng(5)
    for variable in reference.weights:  # layer scales O(1), norms off identity: every weight matters
        value = np.asarray(variable)
        if "layer_scale" in variable.path:
            variable.assign(rng.uniform(0.2, 1.0, value.shape).astype("float32"))
        elif "layernorm" in variable.path:
            variable.assign(value + rng.normal(0, 0.1, value.shape).astype("float32"))
    path = caches / "convnext_tiny.h5"
    reference.save(path)
    data = path.read_bytes()
    entry = pretrained.resolve("convnext_tiny", "imagenet")
    assert entry.source == "keras" and entry.sha256 == keras.src.applications.convnext.WEIGHTS_HASHES["convnext_tiny"][0]
    hub.add_file(f"convnext/{entry.filename}", data)

    # keras' published hash is not our random file's: refused and removed
    with pytest.raises(pretrained.CorruptDownloadError, match=f"do not match their sha256 {entry.sha256}"):
        kcz.ConvNeXtTiny(weights="imagenet")
    assert _cached_files(caches / "keras") == []

    served_entry = pretrained.PretrainedEntry(**dict(entry.as_dict(), sha256=hashlib.sha256(data).hexdigest()))
    monkeypatch.setattr(pretrained, "resolve", lambda name, weights="imagenet", source=None: served_entry)
    model = kcz.ConvNeXtTiny(weights="imagenet", classifier_activation=None)
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_array_equal(kcz.preprocess_input(images, model), images)  # the model normalises inside
    np.testing.assert_allclose(model(images).numpy(), reference(images).numpy(), atol=TOLERANCE, rtol=0)
    notop = kcz.ConvNeXtTiny(weights="imagenet", include_top=False, pooling="avg")
    trunk = keras.Model(reference.input, reference.get_layer("convnext_tiny_head_layernorm").output)
    np.testing.assert_allclose(notop(images).numpy(), trunk(images).numpy(), atol=TOLERANCE, rtol=0)


def test_offline_without_cache_names_url_cache_and_command(caches, monkeypatch):
    hub = LocalHub().start()
    url = hub.url
    hub.stop()  # a port where nothing answers
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("KERAS_CONVZOO_KERAS_ORIGIN", url)
    with pytest.raises(pretrained.DownloadError) as info:
        kcz.MobileNetV2(alpha=0.35, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message and "Connection refused" in message
    assert f"{url}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5" in message
    assert str(caches / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5") in message
    assert "`convzoo download mobilenetv2_035 --tag keras`" in message and "set HF_HUB_OFFLINE=1" in message

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing is contacted: the hub (no retries) and plain URLs
    with pytest.raises(pretrained.DownloadError) as info:
        kcz.ResNeXt50(weights="imagenet")
    message = str(info.value)
    assert f"{url}/timm/resnext50_32x4d.a1h_in1k/resolve/main/model.safetensors (HF_HUB_OFFLINE=1 is set)" in message
    assert str(caches / "hf" / "hub" / "models--timm--resnext50_32x4d.a1h_in1k") in message
    assert "convzoo download resnext50_32x4d --tag a1h_in1k" in message
    with pytest.raises(pretrained.DownloadError, match=r"0\.35_224\.h5 \(HF_HUB_OFFLINE=1 is set\)"):
        kcz.MobileNetV2(alpha=0.35, weights="imagenet")


def test_http_mirror_keeps_each_hub_file_apart_and_reports_a_missing_one(caches, served, monkeypatch):
    hub = served["hub"]
    entry = pretrained.resolve("mobilenetv2_050", "lamb_in1k")
    data = (served["refs"] / "mobilenetv2_050.safetensors").read_bytes()
    hub.add_file(f"mirror/{entry.mirror_path}", data)
    hub.add_file(f"mirror/{entry.mirror_path}.sha256", hashlib.sha256(data).hexdigest().encode() + b"  x\n")
    monkeypatch.setenv(pretrained.MIRROR_ENV, hub.url + "/mirror")
    reference = np.load(served["refs"] / "mobilenetv2_050.npz")
    model = kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k", input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    np.testing.assert_allclose(model(reference["inputs"]).numpy(), reference["logits"], atol=TOLERANCE, rtol=0)
    assert (caches / "keras" / "models" / "timm" / "mobilenetv2_050.lamb_in1k" / "model.safetensors").is_file()
    # another hub file of the same name, absent from the mirror (no file, no .sha256): refused, never the cached file
    with pytest.raises(pretrained.DownloadError, match=r"The mirror's http://127\.0\.0\.1:\d+/mirror/timm/"
                                                       r"mobilenetv2_100\.ra_in1k/model\.safetensors .* no sha256"):
        kcz.MobileNetV2(alpha=1.0, weights="ra_in1k")


def test_a_mirror_file_without_a_hash_is_refused_and_a_bad_one_names_the_mirror(caches, served, monkeypatch, tmp_path):
    """Hub entries have no sha256 in the table: a mirror's file is checked against its .sha256, or not loaded at all.

    A hand-made mirror whose file was damaged after its header (a flipped
    byte in the tensor data) would otherwise load silently wrong.
    """
    entry = pretrained.resolve("mobilenetv2_050", "lamb_in1k")
    data = bytearray((served["refs"] / "mobilenetv2_050.safetensors").read_bytes())
    data[-100] ^= 0xFF  # tensor data: safetensors' header still parses
    folder = tmp_path / "mirror"
    target = folder.joinpath(*entry.mirror_path.split("/"))
    target.parent.mkdir(parents=True)
    target.write_bytes(bytes(data))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(pretrained.MIRROR_ENV, str(folder))
    with pytest.raises(pretrained.CorruptDownloadError, match=r"has no sha256 to check it against .*"
                                                              r"convzoo download mobilenetv2_050 --tag lamb_in1k"):
        kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k")
    assert target.read_bytes() == bytes(data)  # a mirror is never modified

    hub = served["hub"]  # an HTTP mirror: the file without its .sha256, then with a .sha256 it does not match
    hub.add_file(f"bare/{entry.mirror_path}", bytes(data))
    monkeypatch.setenv(pretrained.MIRROR_ENV, hub.url + "/bare")
    with pytest.raises(pretrained.CorruptDownloadError, match=r"The mirror's http://127\.0\.0\.1:\d+/bare/.* no sha256"):
        kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k")
    cached = caches / "keras" / "models" / "timm" / "mobilenetv2_050.lamb_in1k" / "model.safetensors"
    assert not cached.exists()  # nothing unverifiable was downloaded
    good = hashlib.sha256((served["refs"] / "mobilenetv2_050.safetensors").read_bytes()).hexdigest()
    hub.add_file(f"bare/{entry.mirror_path}.sha256", good.encode() + b"  model.safetensors\n")
    with pytest.raises(pretrained.CorruptDownloadError, match=r"weights \(http://127\.0\.0\.1:\d+/bare/timm/.*\) do not "
                                                              r"match .*refill it with `convzoo download mobilenetv2_050"):
        kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k")
    assert not cached.exists()


def test_download_command_fills_a_mirror_that_serves_an_air_gapped_machine(caches, served, capsys, monkeypatch):
    mirror = caches / "mirror"
    assert cli.main(["download", "mobilenetv2_035", "--mirror", str(mirror)]) == 0  # imagenet: keras' file
    assert "mobilenetv2_035.keras: " in capsys.readouterr().out
    assert cli.main(["download", "mobilenetv2_050", "--tag", "lamb_in1k", "--mirror", str(mirror)]) == 0
    hub_copy = mirror / "timm" / "mobilenetv2_050.lamb_in1k" / "model.safetensors"
    assert hub_copy.read_bytes() == (served["refs"] / "mobilenetv2_050.safetensors").read_bytes()
    assert (hub_copy.parent / "model.safetensors.sha256").read_text().split()[0] == hashlib.sha256(
        hub_copy.read_bytes()).hexdigest()

    # another machine: empty caches, no hub, only the mirror
    monkeypatch.setenv("HF_HOME", str(caches / "hf2"))
    monkeypatch.setenv("KERAS_HOME", str(caches / "keras2"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(pretrained.MIRROR_ENV, str(mirror))
    reference = np.load(served["refs"] / "mobilenetv2_050.npz")
    model = kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k", input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    np.testing.assert_allclose(model(reference["inputs"]).numpy(), reference["logits"], atol=TOLERANCE, rtol=0)
    assert kcz.MobileNetV2(alpha=0.35, weights="imagenet").pretrained_cfg.tag == "keras"
    with pytest.raises(pretrained.DownloadError, match=r"has no timm/resnext50_32x4d\.a1h_in1k/model\.safetensors"):
        kcz.ResNeXt50(weights="imagenet")
    hub_copy.write_bytes(hub_copy.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(pretrained.CorruptDownloadError, match="does not match its sha256"):
        kcz.MobileNetV2(alpha=0.5, weights="lamb_in1k")
    assert hub_copy.exists()  # a mirror is never modified


def test_ported_file_records_its_layout_and_loads_right_or_refuses(served, tmp_path):
    """The newcomer's path: port-timm a checkpoint, then load the file by path."""
    refs = served["refs"]
    reference = np.load(refs / "mobilenetv2_050.npz")
    out = tmp_path / "w.weights.h5"
    assert cli.main(["port-timm", "mobilenetv2_050", "--checkpoint", str(refs / "mobilenetv2_050.safetensors"),
                     "--out", str(out)]) == 0
    record = kcz.weights.read_metadata(out)
    assert record == {"name": "mobilenetv2_050", "source": "timm", "tag": None, "classes": 1000, "include_top": True,
                      "config": {"padding_mode": "torch", "bn_epsilon": 1e-5}}
    model = kcz.MobileNetV2(alpha=0.5, weights=str(out), input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    np.testing.assert_allclose(model(reference["inputs"]).numpy(), reference["logits"], atol=TOLERANCE, rtol=0)
    assert model.get_layer("stem_conv_pad") is not None  # timm's symmetric padding, rebuilt from the record
    # the model carries timm's scaling (the variant's weights="imagenet" is keras' "tf" one)
    assert (model.pretrained_cfg.source, model.pretrained_cfg.tag, model.pretrained_cfg.preprocessing) == (
        "timm", "local", "torch")
    images = np.random.default_rng(1).uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(kcz.preprocess_input(images, model), kcz.preprocess_input(images, "seresnet50"),
                               rtol=1e-6)
    from_state_dict = kcz.MobileNetV2(alpha=0.5, weights=str(refs / "mobilenetv2_050.safetensors"))
    assert from_state_dict.pretrained_cfg.preprocessing == "torch"
    notop = kcz.MobileNetV2(alpha=0.5, weights=str(out), include_top=False, pooling="avg")
    trunk = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(notop(reference["inputs"]).numpy(), trunk(reference["inputs"]).numpy(), atol=1e-6)

    with pytest.raises(ValueError, match=r"holds weights of 'mobilenetv2_050'.*not of 'mobilenetv2_035'"):
        kcz.MobileNetV2(alpha=0.35, weights=str(out))
    with pytest.raises(ValueError, match=r"padding_mode='torch'.*Received: padding_mode='keras'"):
        kcz.MobileNetV2(alpha=0.5, weights=str(out), padding_mode="keras")

    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(out.read_bytes()[:4096])
    with pytest.raises(ValueError, match=f"{truncated}.*not a readable HDF5 file"):
        kcz.MobileNetV2(alpha=0.5, weights=str(truncated))
    poisoned = tmp_path / "nan.weights.h5"
    poisoned.write_bytes(out.read_bytes())
    with h5py.File(poisoned, "a") as handle:
        dataset = next(handle[k] for k in _datasets(handle) if handle[k].ndim == 4)
        dataset[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite values"):
        kcz.MobileNetV2(alpha=0.5, weights=str(poisoned))


def _datasets(handle):
    names = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("mobilenetv2_035", {"weights": "imagnet"}, r"Unknown pretrained tag 'imagnet'.*Did you mean 'imagenet'\?"),
        ("mobilenetv2_035", {"weights": "imagenett"}, r"Did you mean 'imagenet'\?"),  # "IMAGENET" is accepted
        ("mobilenetv2_035", {"weights": "none"}, r"Unknown pretrained tag 'none'.*For random initialisation pass "
                                                 r"weights=None \(the Python value, not a string\)"),
        ("mobilenetv2_035", {"weights": "ckpt/best"}, r"'imagenet', a pretrained tag.*no such file exists"),
        ("mobilenetv2_100.ra_in1k", {}, r"use create_model\('mobilenetv2_100', weights='ra_in1k'\)"),
        ("resnext50_32x4d", {"weights": "a1h_in1"}, r"Did you mean 'a1h_in1k'\?"),
        ("seresnet18", {"weights": "imagenet"}, r"No pretrained weights exist for 'seresnet18'.*'seresnet50'"),
        ("replknet31_base", {"weights": "imagenet"}, "Google Drive"),
        ("ccnn_4_140", {"weights": "imagenet"}, "publishes no checkpoints"),
        ("resnext50_32x4d", {"weights": "imagenet", "classes": 10}, r"`classes` must be 1000.*include_top=False"),
        ("convnext_tiny", {"weights": "fb_in22k"}, r"`classes` must be 21841"),
        ("convnext_tiny", {"weights": "dinov3_lvd1689m"}, "feature extractor without classifier"),
        ("mobilenetv2_050", {"weights": "lamb_in1k", "padding_mode": "keras"}, "padding_mode='torch'"),
        ("mobilenetv2_050", {"weights": "imagenet", "input_shape": (64, 64, 1)}, "need 3 input channels"),
    ],
)
def test_bad_weights_arguments_fail_in_one_line_before_any_download(name, kwargs, match, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be fetched
    with pytest.raises(ValueError, match=match) as info:
        kcz.create_model(name, **kwargs)
    assert "\n" not in str(info.value)


def test_table_is_consistent_with_the_registry_and_upstream_names():
    entries = kcz.list_pretrained()
    names = {e.name for e in entries}
    for name in names:
        rows = [e for e in entries if e.name == name]
        assert sum(e.default for e in rows) == 1, name
        assert rows[0].default  # list_pretrained puts the default first
        assert len({e.tag for e in rows}) == len(rows), name
        spec = kcz.get_spec(name)
        for entry in rows:
            assert entry.source in spec.weight_formats, entry.key
            if entry.source == "timm":
                assert entry.hub_id == f"timm/{spec.timm_name}.{entry.tag}"
                assert entry.mean is not None and entry.preprocessing == "torch"
    # keras.applications has the variant: its file is the default (equal outputs, equal preprocessing)
    assert {e.name for e in entries if e.default and e.source == "keras"} == {
        n for n in names if "keras" in kcz.get_spec(n).weight_formats}
    unavailable = {row["name"] for row in pretrained.table_metadata()["unavailable"] if row["tag"] is None}
    assert unavailable | names == set(kcz.list_models())


def test_preprocess_input_follows_the_weights():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    keras_mode = keras.applications.mobilenet_v2.preprocess_input(images.copy())
    np.testing.assert_array_equal(kcz.preprocess_input(images, "mobilenetv2_100"), keras_mode)  # imagenet = keras
    entry = pretrained.resolve("convnext_base", "clip_laion2b_augreg_ft_in1k")  # CLIP's mean/std, not ImageNet's
    expected = (images / 255.0 - np.asarray(entry.mean, "float32")) / np.asarray(entry.std, "float32")
    np.testing.assert_allclose(kcz.preprocess_input(images, entry.key), expected, rtol=1e-6, atol=1e-6)
    assert entry.mean != (0.485, 0.456, 0.406)
    np.testing.assert_array_equal(kcz.preprocess_input(images, "convnext_tiny"), images)  # keras: inside the model


def test_make_pretrained_table_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_pretrained_table.py"), "--check"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_timm_habits_get_a_hint():
    with pytest.raises(TypeError, match=r"pretrained=True is weights='imagenet' here"):
        kcz.create_model("resnext50_32x4d", pretrained=True)
