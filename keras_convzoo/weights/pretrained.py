"""Pretrained weights by name: the generated table, tag resolution, download, cache, mirror and checks.

The table ``keras_convzoo/data/pretrained.json`` is written by
``tools/make_pretrained_table.py`` from upstream metadata (timm's pretrained
configs, keras.applications' weight paths and hashes); nothing in it is
typed by hand. Each entry names one file: timm's are fetched from the
Hugging Face hub with ``huggingface_hub.hf_hub_download`` (it honours
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME``, resumes and shows
progress); keras.applications' files with ``keras.utils.get_file`` into
Keras' own cache (``~/.keras/models``, shared with keras.applications),
checked against keras' published sha256.

Environment variables:

- ``KERAS_CONVZOO_MIRROR``: a folder or an ``http(s)://`` URL laid out as
  ``convzoo download --mirror DIR`` writes it (``<hub id>/<file>`` for hub
  files, ``<source>/<file>`` for the others, each with a ``.sha256`` file
  beside it). When set, files come from there and nothing else is contacted.
- ``KERAS_CONVZOO_KERAS_ORIGIN``: replaces keras.applications' base URL
  (``https://storage.googleapis.com/tensorflow/keras-applications/``).

This module imports neither TensorFlow nor torch at import time.
"""

import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
from typing import Optional, Tuple

TABLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pretrained.json")
MIRROR_ENV = "KERAS_CONVZOO_MIRROR"
KERAS_ORIGIN_ENV = "KERAS_CONVZOO_KERAS_ORIGIN"
#: The tag that names each variant's default weights, as in keras.applications.
DEFAULT_TAG = "imagenet"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(OSError):
    """Pretrained weights could not be fetched (no network, no cache, a server error)."""


class CorruptDownloadError(DownloadError):
    """A fetched file did not match its published hash, or could not be read; it was removed."""


class UnreadableFileError(ValueError):
    """A weights file is truncated or corrupt (raised by the readers, with the file's name)."""


def discard(path):
    """Removes a cached file: a hub snapshot link and the blob it points to, or a plain file.

    Files inside ``KERAS_CONVZOO_MIRROR`` are never removed.
    """
    mirror = os.environ.get(MIRROR_ENV)
    if mirror and not re.match(r"^https?://", mirror) and os.path.abspath(path).startswith(os.path.abspath(mirror)):
        return
    _remove(os.path.realpath(path), path)


@dataclasses.dataclass(frozen=True)
class PretrainedEntry:
    """One pretrained weights file of a registered variant (a row of the generated table).

    Attributes:
        name: registry name, e.g. ``"resnext50_32x4d"``.
        tag: upstream tag, e.g. ``"a1h_in1k"`` (timm) or ``"keras"``.
        source: ``"timm"``, ``"keras"``, ``"torchvision"`` or ``"official"``.
        default: whether ``weights="imagenet"`` loads this entry.
        hub_id: Hugging Face repository (timm's weights), or None.
        filename: file name in the repository or at the URL.
        url: download URL (keras.applications, torchvision), or None.
        sha256: published sha256 of the file, or None (hub files are
            checked against the hub's own sha256 of the file instead).
        sha256_prefix: the leading hex digits of the sha256 that
            torchvision puts in its file names (torch.hub checks them), or None.
        license: license of the weights as upstream states it.
        num_classes: classifier width (0: a feature extractor without one).
        input_size: ``(height, width)`` the weights were evaluated at.
        crop_pct, crop_mode, interpolation: evaluation resize and crop.
        mean, std: per-channel normalisation on 0-1 inputs (``"torch"``
            preprocessing), or None.
        preprocessing: ``"torch"`` (0-255 -> 0-1 -> mean/std), ``"tf"``
            (0-255 -> -1..1) or ``"none"`` (the model scales 0-255 inputs).
        origin_url: where upstream first published the weights.
        notes: remarks of the table generator.
    """

    name: str
    tag: str
    source: str
    default: bool
    filename: str
    license: str
    num_classes: int
    input_size: Tuple[int, int]
    preprocessing: str
    hub_id: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    crop_pct: Optional[float] = None
    crop_mode: Optional[str] = None
    interpolation: Optional[str] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    origin_url: Optional[str] = None
    notes: str = ""

    @property
    def key(self):
        """``"name.tag"``, timm's way to name pretrained weights."""
        return f"{self.name}.{self.tag}"

    @property
    def mirror_path(self):
        """Path of the file inside a mirror folder or URL."""
        return f"{self.hub_id}/{self.filename}" if self.hub_id else f"{self.source}/{self.filename}"

    @property
    def download_url(self):
        """The URL the file is fetched from (``KERAS_CONVZOO_KERAS_ORIGIN`` applied)."""
        if self.hub_id:
            endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
            return f"{endpoint.rstrip('/')}/{self.hub_id}/resolve/main/{self.filename}"
        origin = os.environ.get(KERAS_ORIGIN_ENV)
        if self.source == "keras" and origin:
            return origin.rstrip("/") + "/" + self.url.split("/keras-applications/", 1)[1]
        return self.url

    def as_dict(self):
        """The entry as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=1)
def _table():
    with open(TABLE_PATH, encoding="utf-8") as handle:
        data = json.load(handle)
    entries = []
    for row in data["entries"]:
        row = dict(row)
        for field in ("input_size", "mean", "std"):
            if row.get(field) is not None:
                row[field] = tuple(row[field])
        entries.append(PretrainedEntry(**row))
    return tuple(entries), tuple(data.get("unavailable", ())), dict(data.get("generated_from", {}))


def table_metadata():
    """What the table was generated from (timm and keras versions), and the variants without weights.

    Returns:
        A dict with ``generated_from`` (package versions) and
        ``unavailable`` (rows ``{"name", "source", "reason"}``).
    """
    _, unavailable, generated_from = _table()
    return {"generated_from": generated_from, "unavailable": [dict(row) for row in unavailable]}


def list_pretrained(pattern="*"):
    """The pretrained weights of the registered variants matching ``pattern``.

    Args:
        pattern: shell-style pattern on registry names (``"convnext*"``), or
            one registry name.

    Returns:
        A list of ``PretrainedEntry`` (registry name order; per variant the
        default first, then upstream's order). ``entry.key`` is
        ``"name.tag"``; ``weights=entry.tag`` loads it.

    Example:
    >>> [e.tag for e in list_pretrained("resnext50_32x4d")][:2]
    ['a1h_in1k', 'a1_in1k']
    """
    if not isinstance(pattern, str):
        raise TypeError(f"`pattern` must be a str. Received: pattern={pattern!r}")
    entries, _, _ = _table()
    chosen = [e for e in entries if fnmatch.fnmatchcase(e.name, pattern)]
    return sorted(chosen, key=lambda e: (e.name, not e.default))


def _names_with_weights():
    entries, _, _ = _table()
    return sorted({e.name for e in entries})


def resolve(name, weights=DEFAULT_TAG, source=None):
    """The table entry that ``weights=`` names for a registered variant.

    Args:
        name: registry name.
        weights: ``"imagenet"`` (the variant's default) or an upstream tag,
            e.g. ``"a1h_in1k"``; ``"name.tag"`` works too.
        source: optional source the entry must come from (``"timm"``).

    Returns:
        A ``PretrainedEntry``.

    Raises:
        ValueError: one line: a variant without pretrained weights (listing
            those that have them), or an unknown tag (suggesting the closest
            and listing the variant's tags).

    Example:
    >>> resolve("convnext_tiny", "fb_in1k").hub_id
    'timm/convnext_tiny.fb_in1k'
    """
    if not isinstance(weights, str):
        raise TypeError(f"`weights` must be a str tag. Received: weights={weights!r}")
    entries = [e for e in list_pretrained(name) if e.name == name and (source is None or e.source == source)]
    if not entries:
        unavailable = [row["reason"] for row in table_metadata()["unavailable"] if row["name"] == name]
        why = f" ({unavailable[0]})" if unavailable else ""
        where = f" from {source}" if source else ""
        raise ValueError(
            f"No pretrained weights{where} exist for '{name}'{why}; pretrained weights exist for "
            f"{_names_with_weights()}. Received: weights={weights!r}"
        )
    tag = weights[len(name) + 1:] if weights.startswith(name + ".") else weights
    if tag == DEFAULT_TAG:
        defaults = [e for e in entries if e.default] or [e for e in entries if e.num_classes == 1000] or entries
        return defaults[0]
    for entry in entries:
        if entry.tag == tag:
            return entry
    tags = [DEFAULT_TAG] + [e.tag for e in entries]
    lowered = {t.lower(): t for t in tags}
    close = difflib.get_close_matches(tag.lower(), list(lowered), n=1, cutoff=0.5)
    hint = f"Did you mean {lowered[close[0]]!r}? " if close else ""
    if tag.lower() in ("none", "null", "random"):
        hint = "For random initialisation pass weights=None (the Python value, not a string). "
    raise ValueError(
        f"Unknown pretrained tag {tag!r} for '{name}'. {hint}Tags: {tags} (see keras_convzoo.list_pretrained"
        f"({name!r})), or a path to a weights file. Received: weights={weights!r}"
    )


def looks_like_tag(weights):
    """True when a ``weights=`` string is no file path (no folder, no weights-file suffix)."""
    from keras_convzoo.weights.loading import WEIGHT_SUFFIXES
    from keras_convzoo.weights.state_dict import STATE_DICT_SUFFIXES

    return (
        isinstance(weights, str)
        and not weights.endswith(WEIGHT_SUFFIXES + STATE_DICT_SUFFIXES + (".keras",))
        and os.sep not in weights
        and "/" not in weights
        and not os.path.exists(weights)
    )


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(*paths):
    for path in paths:
        if path and os.path.lexists(path):
            os.remove(path)


def _check_hash(entry, path, expected, remove=(), url=None):
    """Removes ``path`` (and ``remove``) and raises when its sha256 does not start with ``expected``.

    ``url``: where it came from when not ``entry.download_url`` (an HTTP mirror).
    """
    if expected and not _sha256(path).startswith(expected):
        _remove(path, *remove)
        again = ("run the same call again" if url is None else
                 f"run the same call again; if it fails again, the mirror's copy (or its .sha256) is damaged: refill "
                 f"it with `convzoo download {entry.name} --tag {entry.tag} --mirror DIR`")
        raise CorruptDownloadError(
            f"The downloaded {entry.key} weights ({url or entry.download_url}) do not match their sha256 {expected}: "
            f"the download was truncated or corrupted and has been removed; {again}."
        )


def _unverifiable_mirror_error(entry, where):
    """A mirror file with no hash to check it against (a hand-made mirror): refused, never loaded unchecked."""
    return CorruptDownloadError(
        f"The mirror's {where} for the {entry.key} weights has no sha256 to check it against ({where}.sha256 is "
        "missing and the table has none for this file), so it is not loaded: fill the mirror with "
        f"`convzoo download {entry.name} --tag {entry.tag} --mirror DIR` (it writes the .sha256), or write the "
        "file's sha256 (`sha256sum`) into that .sha256 yourself."
    )


def offline():
    """True when ``HF_HUB_OFFLINE`` is set: nothing is downloaded, hub or not (only caches and the mirror)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _offline_error(entry, reason, cache, url=None):
    if offline():
        reason = f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set"
    return DownloadError(
        f"Could not fetch the {entry.key} weights from {url or entry.download_url} ({reason}) and nothing is cached "
        f"at {cache}. On a machine with a network run `convzoo download {entry.name} --tag {entry.tag}` and copy the "
        f"cache, or `convzoo download {entry.name} --tag {entry.tag} --mirror DIR` and set {MIRROR_ENV}=DIR here"
        + ("." if offline() else "; set HF_HUB_OFFLINE=1 to fail at once instead of retrying.")
    )


def _server_error(entry, reason, url=None):
    return DownloadError(
        f"The server refused the {entry.key} weights at {url or entry.download_url} ({reason}); nothing was cached."
    )


def hub_cache_dir():
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def keras_cache_dir():
    """Keras' download cache (``$KERAS_HOME/models``, default ``~/.keras/models``), shared with keras.applications."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def _fetch_hub(entry):
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError as error:  # pragma: no cover - a core dependency
        raise ImportError("Downloading timm's weights needs huggingface_hub: pip install huggingface_hub") from error
    cache = hub_cache_dir()
    cached = huggingface_hub.try_to_load_from_cache(entry.hub_id, entry.filename, cache_dir=cache)
    if isinstance(cached, str) and os.path.isfile(cached):
        return cached
    if offline():
        raise _offline_error(entry, "", os.path.join(cache, "models--" + entry.hub_id.replace("/", "--")))
    try:
        path = huggingface_hub.hf_hub_download(
            entry.hub_id, entry.filename, cache_dir=cache, endpoint=os.environ.get("HF_ENDPOINT") or None
        )
    except hub_errors.LocalEntryNotFoundError as error:  # offline or unreachable, and not cached
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _offline_error(entry, reason, os.path.join(cache, "models--" + entry.hub_id.replace("/", "--"))) from None
    except (hub_errors.EntryNotFoundError, hub_errors.RepositoryNotFoundError) as error:
        raise DownloadError(
            f"The hub has no {entry.filename} in {entry.hub_id} ({type(error).__name__}) for the {entry.key} weights "
            f"({entry.download_url})."
        ) from None
    except hub_errors.HfHubHTTPError as error:
        raise _server_error(entry, str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "Consistency check failed" in reason:  # fewer bytes than the hub announced: nothing was kept
            raise CorruptDownloadError(
                f"The download of the {entry.key} weights ({entry.download_url}) was truncated ({reason}); "
                "nothing was kept: run the same call again."
            ) from None
        raise _offline_error(entry, reason, os.path.join(cache, "models--" + entry.hub_id.replace("/", "--"))) from None
    blob = os.path.realpath(path)
    etag = os.path.basename(blob)
    if _SHA256.match(etag):  # the hub names an LFS blob by its sha256: check what arrived
        _check_hash(entry, blob, etag, remove=(path,))
    return path


def _fetch_url(entry, url, expected):
    """Fetches ``url`` into Keras' cache with ``keras.utils.get_file``; hub files (from an HTTP mirror) go to
    ``models/<hub id>/`` there, since every hub file is called ``model.safetensors``."""
    from keras_convzoo.backend import keras

    subdir = os.path.join("models", *entry.hub_id.split("/")) if entry.hub_id else "models"
    cache = os.path.join(os.path.dirname(keras_cache_dir()), subdir)
    target = os.path.join(cache, entry.filename)
    if os.path.isfile(target):
        if expected is None or _sha256(target).startswith(expected):
            return target
        _remove(target)  # a stale or damaged copy: fetched again below
    if offline():
        raise _offline_error(entry, "", target, url)
    os.makedirs(cache, exist_ok=True)  # else keras falls back to /tmp/.keras for a cache folder it cannot write
    try:
        path = keras.utils.get_file(
            entry.filename, url, cache_subdir=subdir, cache_dir=os.path.dirname(keras_cache_dir()), file_hash=None
        )
    except Exception as error:  # keras raises a bare Exception for URL and HTTP errors
        _remove(target)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if re.search(r": \d{3} -- ", reason):  # "URL fetch failure on URL: 404 -- Not Found": the server answered
            raise _server_error(entry, reason, url) from None
        raise _offline_error(entry, reason, target, url) from None
    _check_hash(entry, path, expected, url=None if url == entry.download_url else url)
    return path


def _mirror(entry):
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return None
    if re.match(r"^https?://", mirror):
        url = mirror.rstrip("/") + "/" + entry.mirror_path
        expected = entry.sha256 or entry.sha256_prefix or _read_remote_hash(url + ".sha256")
        if expected is None:
            raise _unverifiable_mirror_error(entry, url)
        return _fetch_url(entry, url, expected)
    path = os.path.join(mirror, *entry.mirror_path.split("/"))
    if not os.path.isfile(path):
        raise DownloadError(
            f"{MIRROR_ENV}={mirror!r} has no {entry.mirror_path} for the {entry.key} weights; fill it on a machine "
            f"with a network with `convzoo download {entry.name} --tag {entry.tag} --mirror {mirror}`."
        )
    expected = entry.sha256 or entry.sha256_prefix
    if expected is None and os.path.isfile(path + ".sha256"):
        with open(path + ".sha256", encoding="ascii") as handle:
            expected = (handle.read().split() or [None])[0]
    if expected is None:
        raise _unverifiable_mirror_error(entry, path)
    if not _sha256(path).startswith(expected):
        raise CorruptDownloadError(
            f"The mirror's {path} does not match its sha256 {expected}; download it again into the mirror."
        )
    return path


def _read_remote_hash(url):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode("ascii").split()[0]
    except (urllib.error.URLError, OSError, IndexError):
        return None


def fetch(entry):
    """Returns the local path of an entry's file: from the mirror, the cache, or downloaded once.

    Downloads are checked: hub files against the sha256 the hub names them
    by, keras.applications files against keras' published sha256, mirror
    files against the table or their ``.sha256`` file (a mirror file with
    neither is refused). A file that does not match is removed and reported.

    Args:
        entry: a ``PretrainedEntry`` (see ``resolve``).

    Returns:
        The path of the cached file.

    Raises:
        DownloadError: (an ``OSError``) no network and no cache: one line
            naming the URL, the cache path and the command that fetches it.
        CorruptDownloadError: the file did not match its hash (removed), or
            a mirror's file has no hash to check it against.

    Example:
    >>> fetch(resolve("mobilenetv2_100", "imagenet"))  # doctest: +SKIP
    '/home/me/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5'
    """
    mirrored = _mirror(entry)
    if mirrored is not None:
        return mirrored
    if entry.hub_id:
        return _fetch_hub(entry)
    return _fetch_url(entry, entry.download_url, entry.sha256 or entry.sha256_prefix)


def copy_to_mirror(entry, path, mirror):
    """Copies a fetched file into a mirror folder (``<mirror>/<entry.mirror_path>`` and its ``.sha256``).

    Args:
        entry: the ``PretrainedEntry``.
        path: the fetched file.
        mirror: the mirror folder (created if needed).

    Returns:
        The path written.
    """
    target = os.path.join(mirror, *entry.mirror_path.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = target + ".part"
    shutil.copyfile(path, temporary)
    digest = _sha256(temporary)
    with open(temporary + ".sha256", "w", encoding="ascii") as handle:
        handle.write(f"{digest}  {entry.filename}\n")
    os.replace(temporary, target)
    os.replace(temporary + ".sha256", target + ".sha256")
    return target
