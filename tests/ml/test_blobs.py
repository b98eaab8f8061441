"""Blob store: canonical bytes, content addressing, verification on read, local and fsspec roots."""

import hashlib
import uuid
from decimal import Decimal

import numpy as np
import pytest

from methtrader.ml.blobs import (
    BlobCorruptedError,
    BlobError,
    BlobNotFoundError,
    BlobStore,
    canonical_bytes,
    decision_blob,
)


def sample() -> dict:
    return decision_blob(
        {"ret_1": 0.001, "rsi_14": 55.5, "vol_20": float("nan")},
        {"ts": np.array([1, 2], dtype=np.int64), "close": np.array([100.5, 101.25])},
        model_uri="models:/m/1",
        qty=Decimal("0.10"),
    )


def test_canonical_bytes_are_stable_and_exact():
    a = canonical_bytes({"b": 1, "a": [0.1, -0.0, float("inf")], "c": np.float64(1e-300)})
    assert a == b'{"a":[0.1,-0.0,{"$float":"inf"}],"b":1,"c":1e-300}'
    # key order, tuples vs lists and numpy vs Python numbers do not change the bytes
    assert canonical_bytes({"c": 1e-300, "b": np.int64(1), "a": (0.1, -0.0, np.inf)}) == a
    assert canonical_bytes(sample()) == canonical_bytes(sample())
    assert canonical_bytes({"x": 0.1 + 0.2}) != canonical_bytes({"x": 0.3})  # every bit counts
    with pytest.raises(BlobError, match="cannot store a object"):
        canonical_bytes({"x": object()})


@pytest.mark.parametrize("kind", ["dir", "file-url", "memory"])
def test_put_get_roundtrip(tmp_path, kind):
    root = {
        "dir": str(tmp_path / "blobs"),
        "file-url": f"file://{tmp_path}/blobs",
        "memory": f"memory://blobs-{uuid.uuid4().hex}",
    }[kind]
    store = BlobStore(root)
    obj = sample()
    sha = store.put(obj)
    assert sha == hashlib.sha256(canonical_bytes(obj)).hexdigest()
    assert store.put(sample()) == sha  # idempotent
    assert store.path(sha).endswith(f"/{sha[:2]}/{sha}")
    if kind != "memory":
        assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == canonical_bytes(obj)
    back = store.get(sha)
    assert back["features"]["ret_1"] == 0.001 and np.isnan(back["features"]["vol_20"])
    assert back["window"] == {"ts": [1, 2], "close": [100.5, 101.25]}
    assert back["qty"] == Decimal("0.10") and back["model_uri"] == "models:/m/1"
    assert canonical_bytes(back) == canonical_bytes(obj)


def test_default_root_is_var_blobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METHTRADER_BLOBS_URL", raising=False)
    sha = BlobStore().put({"a": 1})
    assert (tmp_path / "var" / "blobs" / sha[:2] / sha).is_file()
    monkeypatch.setenv("METHTRADER_BLOBS_URL", str(tmp_path / "elsewhere"))
    sha = BlobStore().put({"a": 2})
    assert (tmp_path / "elsewhere" / sha[:2] / sha).is_file()


def test_corrupted_and_missing_blobs_raise_clear_errors(tmp_path):
    store = BlobStore(tmp_path)
    sha = store.put(sample())
    path = tmp_path / sha[:2] / sha
    path.write_bytes(path.read_bytes().replace(b"101.25", b"101.26"))
    with pytest.raises(BlobCorruptedError, match=f"blob {sha} .* is corrupted"):
        store.get(sha)
    assert store.put(sample()) == sha  # storing the content again repairs the blob
    assert store.get(sha)["window"]["close"] == [100.5, 101.25]
    missing = "0" * 64
    with pytest.raises(BlobNotFoundError, match=f"blob {missing} not found"):
        store.get(missing)
    with pytest.raises(BlobError, match="not a SHA-256"):
        store.get("../../etc/passwd")


def test_memory_corruption_detected():
    store = BlobStore(f"memory://blobs-{uuid.uuid4().hex}")
    sha = store.put({"a": 1})
    store._fs.pipe_file(store.path(sha), b'{"a":2}')
    with pytest.raises(BlobCorruptedError):
        store.get(sha)
