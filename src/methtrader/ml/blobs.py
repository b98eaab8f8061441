"""Content-addressed store for the inputs of each decision: its feature vector and raw bar window.

Serialisation is canonical JSON, chosen over `.npy` because a regulator can read it with any tool
and one format holds names, numbers and metadata together:

* UTF-8, ASCII only (`ensure_ascii`), keys sorted, no whitespace (`","` and `":"` separators);
* floats as Python's `repr` (the shortest text that reads back to the same float64), integers as
  integers, `-0.0` kept; NaN and ±infinity, which JSON lacks, as `{"$float": "nan"|"inf"|"-inf"}`;
* numpy arrays as lists (float64 → floats, integer arrays → ints), numpy scalars as Python numbers,
  tuples as lists, `Decimal` as `{"$decimal": "1.23"}`.

Equal content therefore gives byte-identical blobs and the same SHA-256. A blob lives at
`<root>/<sha256[:2]>/<sha256>`; the root is `var/blobs` by default, or any fsspec URL
(`file://`, `memory://`, `s3://bucket/prefix`) given as `root` or in `METHTRADER_BLOBS_URL`.
`get` re-hashes what it reads: a corrupted blob raises `BlobCorruptedError`, a missing one
`BlobNotFoundError`.
"""

import hashlib
import json
import math
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ROOT = "var/blobs"
ENV_ROOT = "METHTRADER_BLOBS_URL"
_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob that cannot be stored or read back as it was: one-line message."""


class BlobNotFoundError(BlobError):
    pass


class BlobCorruptedError(BlobError):
    pass


def _plain(obj: Any) -> Any:
    """JSON-ready form with the canonical encodings above (raises BlobError for anything else)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(obj, Decimal):
        return {"$decimal": str(obj)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise BlobError(f"cannot store an array of dtype {obj.dtype}")
        return [_plain(v) for v in obj.tolist()]
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise BlobError(f"blob keys must be strings, got {key!r}")
            out[key] = _plain(value)
        return out
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    raise BlobError(f"cannot store a {type(obj).__name__} in a blob")


def _revive(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and "$float" in obj:
            return float(obj["$float"])
        if len(obj) == 1 and "$decimal" in obj:
            return Decimal(obj["$decimal"])
        return {k: _revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_revive(v) for v in obj]
    return obj


def canonical_bytes(obj: Any) -> bytes:
    """The canonical serialisation of `obj` (see the module doc)."""
    text = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decision_blob(features: dict[str, float], window: dict[str, np.ndarray], **meta: Any) -> dict[str, Any]:
    """What one decision stores: `{"features": {...}, "window": {column: [...]}, **meta}`."""
    return {"features": dict(features), "window": dict(window), **meta}


class BlobStore:
    """`put(obj) -> sha256`, `get(sha256) -> obj`; local directory or fsspec URL."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root = os.fspath(root) if root is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
        self.url = root
        if "://" in root:
            import fsspec

            try:
                self._fs, path = fsspec.core.url_to_fs(root)
            except (ImportError, ValueError) as exc:
                raise BlobError(f"unusable blob store URL {root!r}: {exc}") from None
            self._root = path.rstrip("/")
            protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
            self._local = "file" in protocols
        else:
            self._fs = None
            self._root = root
            self._local = True

    def path(self, sha: str) -> str:
        return f"{self._root}/{sha[:2]}/{sha}"

    # ------------------------------------------------------------------ write
    def put(self, obj: Any) -> str:
        return self.put_bytes(canonical_bytes(obj))

    def put_bytes(self, data: bytes) -> str:
        """Store `data` under its SHA-256 (a no-op when an intact copy is already there)."""
        sha = sha256_hex(data)
        target = self.path(sha)
        try:
            if self.exists(sha) and sha256_hex(self._read(target)) == sha:
                return sha
            if self._local:
                self._write_local(target, data)
            else:
                assert self._fs is not None
                self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                self._fs.pipe_file(target, data)
        except OSError as exc:
            raise BlobError(f"cannot write blob {sha} to {self.url}: {exc}") from None
        return sha

    @staticmethod
    def _write_local(target: str, data: bytes) -> None:
        """Write-then-rename: a reader never sees half a blob."""
        folder = Path(target).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ read
    def exists(self, sha: str) -> bool:
        target = self.path(_checked(sha))
        return Path(target).is_file() if self._fs is None else bool(self._fs.exists(target))

    def _read(self, target: str) -> bytes:
        if self._fs is None:
            return Path(target).read_bytes()
        return self._fs.cat_file(target)

    def get_bytes(self, sha: str) -> bytes:
        """The blob's bytes, verified against its name."""
        target = self.path(_checked(sha))
        try:
            data = self._read(target)
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha} not found in {self.url}") from None
        except OSError as exc:
            raise BlobError(f"cannot read blob {sha} from {self.url}: {exc}") from None
        actual = sha256_hex(data)
        if actual != sha:
            raise BlobCorruptedError(
                f"blob {sha} in {self.url} is corrupted (its content hashes to {actual})"
            )
        return data

    def get(self, sha: str) -> Any:
        data = self.get_bytes(sha)
        try:
            return _revive(json.loads(data.decode("ascii")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BlobCorruptedError(f"blob {sha} in {self.url} is not canonical JSON: {exc}") from None


def _checked(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise BlobError(f"not a SHA-256 hex digest: {sha!r}")
    return sha
