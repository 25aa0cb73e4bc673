"""A local stand-in for the Hugging Face Hub and for plain download origins.

``LocalHub`` runs a small HTTP server on ``127.0.0.1`` (standard library only)
so tests can exercise ``huggingface_hub.hf_hub_download`` and
``keras.utils.get_file`` without reaching the internet.

What the server does, and why (from ``huggingface_hub`` 2.4's
``file_download.py`` and ``utils/_http.py``):

- ``hf_hub_download`` makes two requests for a file that is not yet in
  the cache (a telemetry ``GET /api/...`` may come besides; it gets a 404): ``HEAD {endpoint}/{repo_id}/resolve/
  {revision}/{filename}`` (``get_hf_file_metadata``), then
  ``GET`` on the same URL (``http_get``), or on the ``Location`` of the HEAD
  response if the HEAD answered with a redirect to another host (a CDN).
  Redirects to the same origin are followed during the HEAD. This server
  answers the HEAD with ``200`` directly, so the GET goes to the same URL.
- The HEAD response must carry ``X-Repo-Commit`` (otherwise
  ``FileMetadataError``), an etag (``X-Linked-Etag``, else ``ETag``; quotes
  and a ``W/`` prefix are stripped) which names the cache blob, and a size
  (``X-Linked-Size``, else ``Content-Length``) which ``http_get`` compares with
  the number of bytes received (``OSError`` "Consistency check failed" on a
  mismatch). Without ``X-Xet-Hash`` headers the plain HTTP path is used.
- ``hf_hub_download`` does not hash the downloaded bytes: a file whose size is
  right but whose content is not is cached under the advertised etag. The
  caller has to check the sha256 itself.
- A ``404`` with ``X-Error-Code: EntryNotFound`` becomes
  ``RemoteEntryNotFoundError`` (a subclass of ``EntryNotFoundError``),
  ``RepoNotFound`` becomes ``RepositoryNotFoundError`` and
  ``RevisionNotFound`` becomes ``RevisionNotFoundError``.
- ``http_get`` resumes an interrupted transfer with ``Range: bytes=N-`` and
  expects ``206`` with ``Content-Range``; a ``200`` answer restarts the file.

``keras.utils.get_file`` uses ``urllib.request.urlretrieve``: one plain
``GET`` on the origin URL.
"""

import hashlib
import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_HOST = "127.0.0.1"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_CORRUPT_MODES = ("flip", "truncate")


class _Entry:
    """A served file: the bytes advertised (size, etag) and the bytes sent."""

    def __init__(self, data, etag=None):
        self.data = bytes(data)
        self.served = self.data
        self.etag = etag if etag is not None else hashlib.sha256(self.data).hexdigest()


def _corrupted(data, mode):
    if mode not in _CORRUPT_MODES:
        raise ValueError(f"mode must be one of {_CORRUPT_MODES}. Received: mode={mode!r}")
    if not data:
        raise ValueError("Cannot corrupt an empty file.")
    if mode == "truncate":
        return data[: len(data) // 2]
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _parse_range(header, total):
    """Returns ``(start, end)`` (inclusive), ``None`` for no range, or ``"bad"``."""
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # Malformed or multi-range: ignore the header, as RFC 9110 allows.
    first, last = match.groups()
    if first == "":  # Suffix range: the last N bytes.
        length = int(last)
        if length == 0 or total == 0:
            return "bad"
        return max(total - length, 0), total - 1
    start = int(first)
    end = total - 1 if last == "" else min(int(last), total - 1)
    if start >= total or end < start:
        return "bad"
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, hub):
        self.hub = hub
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__((_HOST, 0), _Handler)

    def handle_error(self, request, client_address):
        # A client that hangs up mid-transfer is expected (and so is stop()
        # closing live connections): stay quiet about it.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub"
    sys_version = ""

    def setup(self):
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format, *args):
        pass

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _serve(self, send_body):
        hub = self.server.hub
        hub._record(self.command, self.path)
        path = urlsplit(self.path).path
        entry, headers, error = hub._lookup(path)
        if error is not None:
            status, error_code, message = error
            self._send_error(status, error_code, message, headers, send_body)
            return
        self._send_entry(entry, headers, send_body)

    def _send_error(self, status, error_code, message, headers, send_body):
        body = json.dumps({"error": message}).encode() if error_code else message.encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
        else:
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_entry(self, entry, headers, send_body):
        data = entry.served
        total = len(data)
        status, start, end = 200, 0, total - 1
        byte_range = _parse_range(self.headers.get("Range"), total) if send_body else None
        if byte_range == "bad":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{total}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if byte_range is not None:
            status, (start, end) = 206, byte_range
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        if not send_body and "X-Linked-Size" in headers:
            # A HEAD on a hub file advertises the size of the original file, like the hub's
            # metadata does; only the GET shows what is really sent.
            self.send_header("Content-Length", headers["X-Linked-Size"])
        else:
            self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if send_body:
            self.wfile.write(data[start : end + 1])


class LocalHub:
    """A local HTTP server that plays the Hugging Face Hub and plain file origins.

    Files added with `add_hub_file()` are served at
    `{url}/{repo_id}/resolve/{revision}/{filename}` with the headers that
    `huggingface_hub.hf_hub_download` needs (point it here with `endpoint=url`
    or the `HF_ENDPOINT` environment variable, which `huggingface_hub` reads
    at import time). Files added with `add_file()` are served at
    `{url}/{url_path}` for `keras.utils.get_file`. `corrupt()` makes the server
    send altered bytes while it still advertises the original etag and size.
    The server only ever binds `127.0.0.1`, on a free port, and logs nothing.

    Files can be added or corrupted before or after `start()`.

    Attributes:
        url: the base URL, `"http://127.0.0.1:PORT"` (available once started).
        requests: a list of `(method, path)` tuples, one per request served,
            in arrival order; `path` is the raw request path (query included).

    Example:

    >>> with LocalHub() as hub:
    ...     hub.add_hub_file("org/model", "model.weights.h5", data)
    ...     path = hf_hub_download("org/model", "model.weights.h5", endpoint=hub.url)
    ...     hub.add_file("weights/x.h5", data)
    ...     path = keras.utils.get_file("x.h5", origin=hub.url + "/weights/x.h5")
    """

    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()
        self._hub_files = {}  # (repo_id, revision) -> {filename: _Entry}
        self._files = {}  # "/url/path" -> _Entry
        self._server = None
        self._thread = None

    # -- content ------------------------------------------------------------------------------

    def add_hub_file(self, repo_id, filename, data, revision="main", etag=None):
        """Serves `data` as `filename` of the hub repository `repo_id`.

        Args:
            repo_id: the repository id, e.g. `"org/model"`.
            filename: the path of the file in the repository, e.g.
                `"model.weights.h5"` or `"sub/dir/file.bin"`.
            data: the file content, as bytes.
            revision: the branch, tag or 40-character commit hash the file is
                served under. The file is also served under the commit hash
                that `commit_hash()` gives for this revision.
            etag: the etag the hub advertises, without quotes. Defaults to the
                sha256 of `data`, as the hub does for LFS files; it names the
                blob in the `huggingface_hub` cache.

        Returns:
            The etag advertised for the file.

        Example:

        >>> etag = hub.add_hub_file("org/model", "model.weights.h5", data)
        >>> etag == hashlib.sha256(data).hexdigest()
        True
        """
        entry = _Entry(data, etag)
        with self._lock:
            self._hub_files.setdefault((repo_id, revision), {})[filename] = entry
        return entry.etag

    def add_file(self, url_path, data):
        """Serves `data` at `{url}/{url_path}`, like a plain file origin.

        Args:
            url_path: the path under the server root, e.g.
                `"tensorflow/keras-applications/resnet/x.h5"`.
            data: the file content, as bytes.

        Returns:
            The sha256 of `data` (hex), handy as `file_hash=` for
            `keras.utils.get_file`.

        Example:

        >>> sha = hub.add_file("weights/x.h5", data)
        >>> keras.utils.get_file("x.h5", origin=hub.url + "/weights/x.h5", file_hash=sha)
        """
        entry = _Entry(data)
        with self._lock:
            self._files["/" + url_path.lstrip("/")] = entry
        return hashlib.sha256(entry.data).hexdigest()

    def corrupt(self, repo_id_or_path, filename=None, mode="flip", revision="main"):
        """Makes the server send altered bytes for a file it already serves.

        The advertised metadata is kept: for a hub file the HEAD still
        announces the etag (`ETag`, `X-Linked-Etag`) and size (`X-Linked-Size`,
        `Content-Length`) of the original, as the hub would for a transfer
        corrupted on the way. GET answers carry a `Content-Length` that matches
        the bytes actually sent, so clients see a complete HTTP response.

        Args:
            repo_id_or_path: a hub repository id (with `filename`) or the
                `url_path` of a file added with `add_file()` (without).
            filename: the file in the hub repository; `None` for a plain file.
            mode: `"flip"` inverts one byte in the middle (same size, other
                content); `"truncate"` sends only the first half of the bytes.
            revision: the revision the hub file was added under.

        Returns:
            The bytes that will now be sent.

        Example:

        >>> hub.corrupt("org/model", "model.weights.h5", mode="truncate")
        >>> hub.corrupt("weights/x.h5", mode="flip")
        """
        with self._lock:
            if filename is None:
                entry = self._files.get("/" + repo_id_or_path.lstrip("/"))
            else:
                entry = self._hub_files.get((repo_id_or_path, revision), {}).get(filename)
            if entry is None:
                raise KeyError(f"No file {repo_id_or_path!r} {filename or ''} is served.")
            entry.served = _corrupted(entry.data, mode)
            return entry.served

    def commit_hash(self, repo_id, revision="main"):
        """Returns the commit hash sent as `X-Repo-Commit` for a revision.

        Args:
            repo_id: the repository id.
            revision: a branch or tag name, or a 40-character commit hash
                (returned as is).

        Returns:
            A 40-character hex string; `huggingface_hub` names the snapshot
            folder `snapshots/{commit_hash}` after it.
        """
        if _COMMIT_RE.fullmatch(revision):
            return revision
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    # -- server -------------------------------------------------------------------------------

    @property
    def url(self):
        if self._server is None:
            raise RuntimeError("LocalHub is not running: call start() first.")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Starts serving on `127.0.0.1`, on a free port, in a daemon thread.

        Returns:
            The `LocalHub` itself.
        """
        if self._server is not None:
            raise RuntimeError("LocalHub is already running.")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="LocalHub", kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        """Stops the server and closes its socket and open connections.

        Connections made afterwards are refused. Calling `stop()` on a hub
        that is not running does nothing.
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for connection in connections:  # Keep-alive connections would otherwise still be answered.
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- used by the request handler ----------------------------------------------------------

    def _record(self, method, path):
        with self._lock:
            self.requests.append((method, path))

    def _lookup(self, path):
        """Returns `(entry, headers, error)`; `error` is `(status, X-Error-Code, message)`."""
        with self._lock:
            entry = self._files.get(unquote(path))
            if entry is not None:
                return entry, {"ETag": f'"{hashlib.sha256(entry.data).hexdigest()}"'}, None
            repo_id, sep, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            if not (sep and repo_id and revision and filename):
                return None, {}, (404, None, "Not Found")
            repo_id, revision, filename = unquote(repo_id), unquote(revision), unquote(filename)
            revisions = {rev: files for (repo, rev), files in self._hub_files.items() if repo == repo_id}
            if not revisions:
                return None, {}, (404, "RepoNotFound", "Repository not found")
            files, served_revision = revisions.get(revision), revision
            if files is None:
                for rev, rev_files in revisions.items():
                    if self.commit_hash(repo_id, rev) == revision:
                        files, served_revision = rev_files, rev
                        break
            if files is None:
                return None, {}, (404, "RevisionNotFound", "Invalid rev id: " + revision)
            headers = {"X-Repo-Commit": self.commit_hash(repo_id, served_revision)}
            entry = files.get(filename)
            if entry is None:
                return None, headers, (404, "EntryNotFound", "Entry not found")
        headers.update(
            {"ETag": f'"{entry.etag}"', "X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(len(entry.data))}
        )
        return entry, headers, None
