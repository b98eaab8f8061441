"""Regulator bundles: a real trade (ledger on SQLite and PostgreSQL, features blob, MLflow run) is
pulled and verifies; every kind of bad input fails with one line and leaves nothing behind; an
edited, removed or added bundle file is named by verify."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from methtrader.audit.bundle import SCHEMA_VERSION, BundleError, pull, read_bundle, verify_bundle
from methtrader.ml.blobs import BlobStore
from support.redis_server import free_port
from support.sealed import seal_trade

from .conftest import COMMIT, T0, Trade


def test_pull_writes_a_bundle_that_verifies(trade: Trade, tmp_path: Path) -> None:
    path = pull(
        trade.db, trade.trade_id, tmp_path / "bundle", blobs=trade.blobs, tracking_uri=trade.run.tracking_uri
    )
    assert path == tmp_path / "bundle"
    names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    features = f"features/{trade.features_hash}.json"
    assert names == sorted(
        ["manifest.json", "order.json", "fills.json", "lineage.json", "model.json", "report.html", features]
    )
    assert verify_bundle(path) == []

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["trade_id"] == trade.trade_id
    ids = manifest["ids"]
    assert ids["exec_ids"] == [f"{trade.trade_id}-e1", f"{trade.trade_id}-e2"]
    assert ids["exchange_order_id"] == "ex-9f1c" and ids["event_seqs"] == [1, 2, 3]
    assert ids["model_run_id"] == trade.run.run_id and ids["model_version"] == trade.run.version
    assert ids["model_name"] == trade.run.name and ids["experiment_id"] == trade.run.experiment_id
    assert ids["code_commit"] == COMMIT and ids["code_dirty"] is False
    assert ids["features_hash"] == trade.features_hash and ids["dataset_digest"] == "d" * 64
    assert manifest["timestamps"]["order_created"] == {"ms": T0, "utc": "2025-11-24T16:00:00.000Z"}
    assert [f["ms"] for f in manifest["timestamps"]["fills"]] == [T0 + 1_000, T0 + 2_500]
    assert manifest["timestamps"]["model_run_start"]["ms"] > 0
    assert set(manifest["files"]) == set(names) - {"manifest.json"}

    # the blob byte for byte, fills exact, the risk snapshot, the MLflow record
    assert (path / features).read_bytes() == BlobStore(trade.blobs).get_bytes(trade.features_hash)
    fills = json.loads((path / "fills.json").read_text())["fills"]
    assert [(f["qty"], f["price"], f["fee"]) for f in fills] == [
        ("0.004", "102.5", "0.0002255"),
        ("0.006", "102.4", "0.00033792"),
    ]
    lineage = json.loads((path / "lineage.json").read_text())["lineage"]
    assert (
        lineage["risk_snapshot"]["var_99_1d"] == "123.45"
        and lineage["risk_snapshot"]["guard_state"] == "ACTIVE"
    )
    model = json.loads((path / "model.json").read_text())
    run = model["run"]
    assert run["params"]["features"] == "ret_1,rsi_14,vol_20" and "accuracy" in run["metrics"]
    assert run["tags"]["mlflow.source.git.commit"] == COMMIT
    assert run["dataset_inputs"][0]["digest"] == "d" * 32 and run["artifact_uri"].startswith("file://")
    assert model["registered_model"]["run_id"] == trade.run.run_id
    report = (path / "report.html").read_text()
    assert trade.trade_id in report and trade.run.run_id in report and "123.45" in report
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left


def test_zip_round_trip(trade: Trade, tmp_path: Path) -> None:
    path = pull(
        trade.db,
        trade.trade_id,
        tmp_path / "t1",
        blobs=trade.blobs,
        tracking_uri=trade.run.tracking_uri,
        fmt="zip",
    )
    assert path == tmp_path / "t1.zip" and zipfile.is_zipfile(path)
    assert verify_bundle(path) == []
    assert "manifest.json" in read_bundle(path)
    # rewrite one member: verify names it
    members = read_bundle(path)
    members["fills.json"] = members["fills.json"].replace(b"0.004", b"0.005")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    problems = verify_bundle(tampered)
    assert len(problems) == 1 and problems[0].startswith("fills.json: SHA-256")


@pytest.fixture
def bundle(sqlite_trade: Trade, tmp_path: Path) -> Path:
    return pull(
        sqlite_trade.db,
        sqlite_trade.trade_id,
        tmp_path / "b",
        blobs=sqlite_trade.blobs,
        tracking_uri=sqlite_trade.run.tracking_uri,
    )


def test_verify_names_an_edited_removed_or_added_file(bundle: Path, sqlite_trade: Trade) -> None:
    order = bundle / "order.json"
    original = order.read_bytes()
    order.write_bytes(original.replace(b'"Filled"', b'"Cancelled"', 1))
    listed = json.loads((bundle / "manifest.json").read_text())["files"]["order.json"]
    actual = hashlib.sha256(order.read_bytes()).hexdigest()
    assert verify_bundle(bundle) == [f"order.json: SHA-256 {actual} differs from the manifest's {listed}"]
    order.write_bytes(original)
    assert verify_bundle(bundle) == []

    (bundle / "report.html").unlink()
    assert verify_bundle(bundle) == ["report.html: listed in the manifest but missing"]

    (bundle / "notes.txt").write_text("added later")
    assert "notes.txt: present but not listed in the manifest" in verify_bundle(bundle)


def test_verify_checks_the_features_name_and_ids_across_files(bundle: Path, sqlite_trade: Trade) -> None:
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # a consistent lie: fills.json rewritten and its new hash put in the manifest -> ids disagree
    fills_path = bundle / "fills.json"
    fills = json.loads(fills_path.read_text())
    fills["fills"][0]["exec_id"] = "forged"
    fills_path.write_text(json.dumps(fills))
    manifest["files"]["fills.json"] = hashlib.sha256(fills_path.read_bytes()).hexdigest()
    # a blob swapped for other content under the same name, hash updated in the manifest
    blob = bundle / f"features/{sqlite_trade.features_hash}.json"
    blob.write_bytes(b'{"features":{}}')
    manifest["files"][f"features/{sqlite_trade.features_hash}.json"] = hashlib.sha256(
        blob.read_bytes()
    ).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    problems = verify_bundle(bundle)
    assert any(p.startswith("fills.json: exec_ids") for p in problems), problems
    assert any(
        p.startswith(f"features/{sqlite_trade.features_hash}.json: content hashes to") for p in problems
    )
    assert len(problems) == 2, problems


def test_verify_refuses_what_is_not_a_bundle(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="no bundle at"):
        verify_bundle(tmp_path / "nowhere")
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        verify_bundle(bundle)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK not really")
    with pytest.raises(BundleError, match="neither a bundle directory nor a readable zip"):
        verify_bundle(junk)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("fmt", ["dir", "zip"])
def test_bad_input_fails_with_one_line_and_leaves_nothing(
    sqlite_trade: Trade, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    trade = sqlite_trade

    def attempt(trade_id: str = trade.trade_id, **kwargs) -> str:
        options = {"blobs": trade.blobs, "tracking_uri": trade.run.tracking_uri, "fmt": fmt, **kwargs}
        with pytest.raises(BundleError) as caught:
            pull(trade.db, trade_id, out / "bundle", **options)
        assert _leftovers(out) == []
        message = str(caught.value)
        assert "\n" not in message
        return message

    assert "no trade 'nope' in the ledger" in attempt("nope")
    closed = f"http://127.0.0.1:{free_port()}"
    assert f"MLflow tracking server {closed} is unreachable" in attempt(tracking_uri=closed)
    assert "does not exist" in attempt(tracking_uri=f"sqlite:///{tmp_path / 'no-mlflow.db'}")
    blob = Path(BlobStore(trade.blobs).path(trade.features_hash))
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"57.25", b"99.99"))
    assert "features blob corrupted" in attempt()
    blob.unlink()
    assert "features blob missing" in attempt()
    blob.write_bytes(original)
    assert (
        verify_bundle(
            pull(
                trade.db,
                trade.trade_id,
                out / "bundle",
                blobs=trade.blobs,
                tracking_uri=trade.run.tracking_uri,
                fmt=fmt,
            )
        )
        == []
    )


def test_pull_never_replaces_an_existing_bundle(bundle: Path, sqlite_trade: Trade) -> None:
    before = read_bundle(bundle)
    with pytest.raises(BundleError, match="already exists"):
        pull(
            sqlite_trade.db,
            sqlite_trade.trade_id,
            bundle,
            blobs=sqlite_trade.blobs,
            tracking_uri=sqlite_trade.run.tracking_uri,
        )
    assert read_bundle(bundle) == before


def test_a_trade_without_model_or_features(sqlite_trade: Trade, tmp_path: Path) -> None:
    from decimal import Decimal

    from methtrader.store import ledger

    with sqlite_trade.db.begin() as conn:
        ledger.insert_order(
            conn,
            trade_id="plain-1",
            symbol="BTCUSDT",
            side="Sell",
            type="Market",
            qty=Decimal("0.1"),
            status="New",
            strategy="sma_cross",
            params_hash="0" * 64,
            created_ts=T0,
        )
        ledger.insert_lineage(
            conn, trade_id="plain-1", strategy="sma_cross", params={"fast": 10}, created_ts=T0
        )
    seal_trade(sqlite_trade.db, "plain-1")
    path = pull(sqlite_trade.db, "plain-1", tmp_path / "plain", tracking_uri="http://127.0.0.1:9")
    assert sorted(p.name for p in path.iterdir()) == [
        "fills.json",
        "lineage.json",
        "manifest.json",
        "model.json",
        "order.json",
        "report.html",
    ]
    problems = verify_bundle(path)
    # the order's params_hash was not the lineage's: the bundle says so
    assert problems == [
        f"order.json: params_hash {'0' * 64!r} differs from the manifest's "
        f"{json.loads((path / 'lineage.json').read_text())['lineage']['params_hash']!r}"
    ]
