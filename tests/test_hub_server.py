"""Tests for `keras_convzoo.testing.hub.LocalHub`, the offline stand-in for the HF hub and download origins.

`huggingface_hub` reads `HF_ENDPOINT`, `HF_HOME` and `HF_HUB_OFFLINE` at import time, so every
`hf_hub_download` call runs in a fresh interpreter (`_hf_download`).
"""

import hashlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys

import pytest

from keras_convzoo.backend import keras
from keras_convzoo.testing.hub import LocalHub

REPO = "org/convzoo-test"
FILENAME = "model.weights.h5"

# Runs hf_hub_download once per (repo_id, filename) in sys.argv[1] and prints one JSON line of results.
_HF_SCRIPT = r"""
import json, os, sys
from huggingface_hub import hf_hub_download

results = []
for repo_id, filename in json.loads(sys.argv[1]):
    try:
        path = hf_hub_download(repo_id, filename)
        results.append({"path": path, "realpath": os.path.realpath(path)})
    except Exception as error:
        results.append({
            "error": type(error).__name__,
            "mro": [cls.__name__ for cls in type(error).__mro__],
            "message": str(error),
        })
print(json.dumps(results))
"""


def _random_bytes(size, seed=0):
    return random.Random(seed).randbytes(size)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _hf_download(hf_home, endpoint, downloads, offline=False):
    """Runs `hf_hub_download(repo_id, filename)` for each pair in a subprocess; returns one dict per pair."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_OFFLINE="1" if offline else "0",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _HF_SCRIPT, json.dumps(downloads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _resolve_path(repo_id, filename, revision="main"):
    return f"/{repo_id}/resolve/{revision}/{filename}"


def _request(hub, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def no_proxy(monkeypatch):
    # urllib (keras.utils.get_file) honours *_proxy variables; never route 127.0.0.1 through one.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_hf_hub_download_then_offline_cache(tmp_path):
    data = _random_bytes(3 * 2**20)
    hf_home = tmp_path / "hf"
    hub = LocalHub().start()
    try:
        etag = hub.add_hub_file(REPO, FILENAME, data)
        assert etag == _sha256(data)
        url = hub.url
        [result] = _hf_download(hf_home, url, [[REPO, FILENAME]])
        assert "error" not in result, result
        assert _read(result["path"]) == data
        # The blob is named by the advertised etag, i.e. the sha256 of the content.
        assert os.path.basename(result["realpath"]) == _sha256(data)
        assert os.path.basename(os.path.dirname(result["realpath"])) == "blobs"
        snapshot = os.path.dirname(result["path"])
        assert os.path.basename(snapshot) == hub.commit_hash(REPO)
        # One HEAD for the metadata, one GET for the content, no /api/... call.
        path = _resolve_path(REPO, FILENAME)
        assert hub.requests == [("HEAD", path), ("GET", path)]
    finally:
        hub.stop()

    # Server gone + offline mode: the cached file is returned.
    [cached] = _hf_download(hf_home, url, [[REPO, FILENAME]], offline=True)
    assert cached == result
    assert _read(cached["path"]) == data
    # Server gone, offline mode not set: the failed HEAD falls back to the cache as well.
    [fallback] = _hf_download(hf_home, url, [[REPO, FILENAME]])
    assert fallback == result
    # A file that was never downloaded cannot come from the cache.
    [missing] = _hf_download(hf_home, url, [[REPO, "other.h5"]], offline=True)
    assert missing["error"] == "LocalEntryNotFoundError"


def test_hf_hub_download_unknown_entry_repo_revision(tmp_path):
    with LocalHub() as hub:
        hub.add_hub_file(REPO, FILENAME, b"weights")
        entry, repo = _hf_download(tmp_path / "hf", hub.url, [[REPO, "missing.h5"], ["org/absent", FILENAME]])
        assert entry["error"] == "RemoteEntryNotFoundError"
        assert "EntryNotFoundError" in entry["mro"]
        assert repo["error"] == "RepositoryNotFoundError"
        assert hub.requests == [
            ("HEAD", _resolve_path(REPO, "missing.h5")),
            ("HEAD", _resolve_path("org/absent", FILENAME)),
        ]
        # The hub's own error headers, which huggingface_hub maps to its exception classes.
        status, headers, _ = _request(hub, "HEAD", _resolve_path(REPO, "missing.h5"))
        assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
        assert headers["X-Repo-Commit"] == hub.commit_hash(REPO)
        status, headers, _ = _request(hub, "HEAD", _resolve_path(REPO, FILENAME, revision="v9"))
        assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
        status, headers, body = _request(hub, "GET", _resolve_path("org/absent", FILENAME))
        assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
        assert "error" in json.loads(body)
        # The commit hash works as a revision too.
        status, _, body = _request(hub, "GET", _resolve_path(REPO, FILENAME, revision=hub.commit_hash(REPO)))
        assert (status, body) == (200, b"weights")


def test_hf_hub_download_corrupted(tmp_path):
    data_short, data_flip = _random_bytes(2**20, seed=1), _random_bytes(2**20, seed=2)
    hf_home = tmp_path / "hf"
    with LocalHub() as hub:
        hub.add_hub_file(REPO, "short.h5", data_short)
        hub.add_hub_file(REPO, "flipped.h5", data_flip)
        served_short = hub.corrupt(REPO, "short.h5", mode="truncate")
        served_flipped = hub.corrupt(REPO, "flipped.h5", mode="flip")
        assert served_short == data_short[: len(data_short) // 2]
        assert len(served_flipped) == len(data_flip) and served_flipped != data_flip
        short, flipped = _hf_download(hf_home, hub.url, [[REPO, "short.h5"], [REPO, "flipped.h5"]])

    # Truncated: http_get compares the bytes received with X-Linked-Size and raises a plain OSError;
    # the temporary file is deleted and neither a blob nor a snapshot entry is created.
    assert short["error"] == "OSError"
    assert "Consistency check failed" in short["message"]
    storage = hf_home / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = storage / "snapshots" / hub.commit_hash(REPO)
    assert not (snapshot / "short.h5").exists()
    assert not (storage / "blobs" / _sha256(data_short)).exists()
    assert [p.name for p in (storage / "blobs").iterdir()] == [_sha256(data_flip)]

    # Flipped: same size, so hf_hub_download accepts it and caches it under the advertised etag
    # (the sha256 of the original) -- hf_hub_download does not hash what it downloads.
    assert "error" not in flipped, flipped
    assert flipped["path"] == str(snapshot / "flipped.h5")
    content = _read(flipped["path"])
    assert content == served_flipped
    etag = os.path.basename(flipped["realpath"])
    assert etag == _sha256(data_flip)
    assert _sha256(content) != etag


def test_local_hub_headers_and_ranges():
    data = _random_bytes(1000, seed=2)
    with LocalHub() as hub:
        etag = hub.add_hub_file(REPO, FILENAME, data)
        path = _resolve_path(REPO, FILENAME)
        status, headers, body = _request(hub, "HEAD", path)
        assert (status, body) == (200, b"")
        assert headers["X-Repo-Commit"] == hub.commit_hash(REPO)
        assert headers["X-Linked-Etag"] == headers["ETag"] == f'"{etag}"'
        assert headers["X-Linked-Size"] == headers["Content-Length"] == "1000"

        status, headers, body = _request(hub, "GET", path, {"Range": "bytes=600-"})
        assert (status, headers["Content-Range"], body) == (206, "bytes 600-999/1000", data[600:])
        status, headers, body = _request(hub, "GET", path, {"Range": "bytes=10-19"})
        assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/1000", data[10:20])
        status, headers, body = _request(hub, "GET", path, {"Range": "bytes=-5"})
        assert (status, headers["Content-Range"], body) == (206, "bytes 995-999/1000", data[-5:])
        status, headers, _ = _request(hub, "GET", path, {"Range": "bytes=1000-"})
        assert (status, headers["Content-Range"]) == (416, "bytes */1000")

        # Truncated: HEAD keeps advertising the original size, GET sends (and frames) the half.
        hub.corrupt(REPO, FILENAME, mode="truncate")
        _, headers, _ = _request(hub, "HEAD", path)
        assert headers["X-Linked-Size"] == headers["Content-Length"] == "1000"
        assert headers["X-Linked-Etag"] == f'"{etag}"'
        status, headers, body = _request(hub, "GET", path)
        assert (status, headers["Content-Length"], body) == (200, "500", data[:500])

        # Plain files: plain 404 without the hub's error code.
        status, headers, _ = _request(hub, "GET", "/nothing/here.h5")
        assert status == 404 and "X-Error-Code" not in headers
        with pytest.raises(ValueError):
            hub.corrupt(REPO, FILENAME, mode="shuffle")
        with pytest.raises(KeyError):
            hub.corrupt("nothing/here.h5")


def test_keras_get_file(tmp_path, no_proxy):
    data = _random_bytes(2**16, seed=3)
    url_path = "tensorflow/keras-applications/convzoo/x.h5"
    with LocalHub() as hub:
        sha = hub.add_file(url_path, data)
        hub.add_file("bad/y.h5", data)
        hub.corrupt("bad/y.h5", mode="flip")
        path = keras.utils.get_file("x.h5", origin=f"{hub.url}/{url_path}", file_hash=sha, cache_dir=str(tmp_path))
        assert path == str(tmp_path / "datasets" / "x.h5")
        assert _read(path) == data
        # A valid cached file is not downloaded again.
        assert keras.utils.get_file("x.h5", origin=f"{hub.url}/{url_path}", file_hash=sha, cache_dir=str(tmp_path))
        assert hub.requests == [("GET", "/" + url_path)]

        # keras 3.15 get_file: a hash mismatch after download raises ValueError("Incomplete or corrupted file
        # detected. ...") and leaves the corrupted file in place (it only deletes the target when urlretrieve itself
        # fails); the next call re-hashes it, sees the mismatch and downloads again.
        with pytest.raises(ValueError, match="Incomplete or corrupted file detected"):
            keras.utils.get_file("y.h5", origin=f"{hub.url}/bad/y.h5", file_hash=sha, cache_dir=str(tmp_path))
        left = tmp_path / "datasets" / "y.h5"
        assert left.exists() and _read(left) != data and len(_read(left)) == len(data)

        # An unknown origin path: urlretrieve's HTTPError becomes a plain Exception and nothing is left behind.
        with pytest.raises(Exception, match="URL fetch failure.*404"):
            keras.utils.get_file("z.h5", origin=f"{hub.url}/missing/z.h5", cache_dir=str(tmp_path))
        assert not (tmp_path / "datasets" / "z.h5").exists()


def test_requests_log_quiet_and_stop(capfd):
    hub = LocalHub()
    with pytest.raises(RuntimeError):
        hub.url
    with hub:
        hub.add_file("a.bin", b"abc")
        port = int(hub.url.rsplit(":", 1)[1])
        assert hub.url == f"http://127.0.0.1:{port}"
        assert _request(hub, "GET", "/a.bin")[::2] == (200, b"abc")
        assert _request(hub, "HEAD", "/a.bin")[0] == 200
        assert _request(hub, "GET", "/b.bin?x=1")[0] == 404
        assert hub.requests == [("GET", "/a.bin"), ("HEAD", "/a.bin"), ("GET", "/b.bin?x=1")]
        # A keep-alive connection opened before stop() must not be answered after it.
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        kept.request("GET", "/a.bin")
        assert kept.getresponse().read() == b"abc"
    with pytest.raises(ConnectionError):
        kept.request("GET", "/a.bin")
        kept.getresponse().read()
    kept.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert len(hub.requests) == 4
    hub.stop()  # Stopping twice is harmless.
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
