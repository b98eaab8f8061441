"""Regulator bundles: everything about one trade, from the order to the model, code and inputs behind it.

    path = pull(db, "t-42", Path("var/audit/t-42"), blobs="var/blobs", tracking_uri="sqlite:///var/mlflow.db")
    problems = verify_bundle(path)            # [] when every hash and id holds

A bundle (a directory, or one zip with the same members) holds:

* `order.json` — the order row and its events; `fills.json` — its executions;
* `lineage.json` — strategy, parameters and their hash, model run and version, code commit and dirty
  flag, features blob hash and the risk snapshot (VaR, limits, guard state) at decision time;
* `features/<sha256>.json` — the decision's features blob, byte for byte, named by its SHA-256;
* `model.json` — the model's MLflow record: run (params, metrics, tags, dataset inputs and digests,
  artifact location) and registered version;
* `report.html` — the same for a human reader;
* `manifest.json` — schema version, every id and timestamp, the audit chain head at pull time, and
  the SHA-256 of every other file. `verify_bundle` recomputes them all.

A pull reads the ledger in one transaction, fetches and checks the blob and the MLflow record, writes
everything into a hidden temporary sibling of the target and renames it into place at the end: a
failed pull leaves nothing that looks like a bundle. Bad input raises `BundleError` (one line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from methtrader.audit.rows import check_trade
from methtrader.store import Database, DatabaseError, schema
from methtrader.store.database import describe
from methtrader.store.ledger import fills_for, get_lineage, get_order, order_events, params_hash
from methtrader.store.types import decimal_text

SCHEMA = "methtrader-audit-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FEATURES_DIR = "features"
DATA_FILES = ("order.json", "fills.json", "lineage.json", "model.json", "report.html")
Format = Literal["dir", "zip"]
_FEATURE_NAME = re.compile(r"^features/([0-9a-f]{64})\.json$")


class BundleError(Exception):
    """A bundle that cannot be pulled or read: unknown trade, missing blob, MLflow down... One line."""


class TradeNotFoundError(BundleError):
    pass


class LedgerDisagreesError(BundleError):
    """The trade's rows differ from what the audit chain recorded: no bundle certifies them."""


# --- JSON ------------------------------------------------------------------------------------------
def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> bytes:
    """Readable, stable JSON (sorted keys, two-space indent, decimals as exact strings), UTF-8."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False, default=_default)
    return (text + "\n").encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    try:
        moment = datetime.fromtimestamp(int(ts_ms) / 1000, UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(ts_ms: int | None) -> dict[str, Any] | None:
    return None if ts_ms is None else {"ms": int(ts_ms), "utc": iso(ts_ms)}


# --- reading the ledger ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TradeRecord:
    """What the ledger knows about one trade, read in one transaction."""

    order: dict[str, Any]
    events: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    lineage: dict[str, Any] | None
    chain_head: dict[str, Any] | None


def read_trade(db: Database, trade_id: str) -> TradeRecord:
    """The order, its events, fills and lineage, and the audit chain head; BundleError if unknown."""
    try:
        with db.connect() as conn:
            if db.dialect == "postgresql":  # one snapshot for every query (SQLite: BEGIN IMMEDIATE)
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                order = get_order(conn, trade_id)
                if order is None:
                    raise TradeNotFoundError(f"no trade {trade_id!r} in the ledger {db.url}")
                events = order_events(conn, trade_id)
                fills = fills_for(conn, trade_id)
                lineage = get_lineage(conn, trade_id)
                disagreements = check_trade(conn, trade_id, order, events, fills, lineage)
                head = conn.execute(select(schema.audit_chain_head)).mappings().first()
    except SQLAlchemyError as exc:
        raise BundleError(f"cannot read the ledger {db.url}: {describe(exc)}") from None
    except DatabaseError as exc:
        raise BundleError(str(exc)) from None
    if disagreements:
        raise LedgerDisagreesError("; ".join(disagreements))
    chain_head = {"last_id": head["last_id"], "last_hash": head["last_hash"]} if head is not None else None
    for row in events:
        row.pop("id", None)
    for row in fills:
        row.pop("id", None)
    return TradeRecord(order, events, fills, lineage, chain_head)


# --- the features blob -----------------------------------------------------------------------------
def read_blob(blobs: str | os.PathLike[str] | None, sha: str) -> bytes:
    """The blob's exact bytes, verified against its hash by the blob store; BundleError otherwise."""
    from methtrader.ml.blobs import BlobCorruptedError, BlobError, BlobNotFoundError, BlobStore

    try:
        return BlobStore(blobs).get_bytes(sha)
    except BlobNotFoundError as exc:
        raise BundleError(f"features blob missing: {exc}") from None
    except BlobCorruptedError as exc:
        raise BundleError(f"features blob corrupted: {exc}") from None
    except BlobError as exc:
        raise BundleError(f"features blob unreadable: {exc}") from None


# --- the MLflow record -----------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def mlflow_client(uri: str) -> Any:
    """An MlflowClient on an existing tracking store: a server must answer, a SQLite file must exist
    (a pull never creates an empty store and then reports the run missing)."""
    from methtrader.ml.tracking import ModelError, connect

    try:
        return connect(uri, must_exist=True)
    except ModelError as exc:
        raise BundleError(str(exc)) from None


def model_record(lineage: Mapping[str, Any] | None, tracking_uri: str | None) -> dict[str, Any]:
    """The MLflow run (and registered version) behind the trade; `{"run": None}` without a model."""
    run_id = (lineage or {}).get("model_run_id")
    name = (lineage or {}).get("model_name")
    version = (lineage or {}).get("model_version")
    from methtrader.ml.tracking import tracking_uri as resolve_tracking_uri  # as model training and ml_signal

    uri = resolve_tracking_uri(tracking_uri)
    if not run_id and not name:
        return {"tracking_uri": None, "run": None, "registered_model": None, "note": "no model in lineage"}
    client = mlflow_client(uri)
    record: dict[str, Any] = {"tracking_uri": _safe_uri(uri), "run": None, "registered_model": None}
    try:
        if name and version:
            mv = client.get_model_version(name, str(version))
            record["registered_model"] = {
                "name": mv.name,
                "version": str(mv.version),
                "run_id": mv.run_id,
                "source": mv.source,
                "status": mv.status,
                "model_id": getattr(mv, "model_id", None),
                "creation_timestamp": mv.creation_timestamp,
                "last_updated_timestamp": mv.last_updated_timestamp,
                "description": mv.description,
                "tags": dict(mv.tags or {}),
            }
            run_id = run_id or mv.run_id
        run = client.get_run(run_id)
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"MLflow at {uri} has no record of run {run_id!r}: {_one_line(exc)}") from None
    info = run.info
    datasets = []
    for item in run.inputs.dataset_inputs if run.inputs is not None else []:
        ds = item.dataset
        datasets.append(
            {
                "name": ds.name,
                "digest": ds.digest,
                "source_type": ds.source_type,
                "source": ds.source,
                "schema": ds.schema,
                "profile": ds.profile,
                "tags": {tag.key: tag.value for tag in item.tags},
            }
        )
    tags = dict(run.data.tags)
    record["run"] = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status,
        "lifecycle_stage": info.lifecycle_stage,
        "user_id": info.user_id,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": tags,
        "dataset_inputs": datasets,
        "dataset_digest": tags.get("dataset_sha256") or (datasets[0]["digest"] if datasets else None),
        "git_commit": tags.get("mlflow.source.git.commit") or tags.get("git_commit"),
    }
    outputs = getattr(run, "outputs", None)
    if outputs is not None and getattr(outputs, "model_outputs", None):
        record["run"]["model_outputs"] = [
            {"model_id": out.model_id, "step": out.step} for out in outputs.model_outputs
        ]
    return record


def _safe_uri(uri: str) -> str:
    """The URI without a password."""
    parsed = urlparse(uri)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return uri


# --- the manifest ----------------------------------------------------------------------------------
def _manifest(
    record: TradeRecord, model: Mapping[str, Any], features_hash: str | None, pulled_ms: int, sources: dict
) -> dict[str, Any]:
    order, lineage = record.order, record.lineage or {}
    run = model.get("run") or {}
    registered = model.get("registered_model") or {}
    ids = {
        "trade_id": order["trade_id"],
        "exchange_order_id": order.get("exchange_order_id"),
        "exec_ids": [fill["exec_id"] for fill in record.fills],
        "event_seqs": [event["seq"] for event in record.events],
        "strategy": lineage.get("strategy", order.get("strategy")),
        "params_hash": lineage.get("params_hash", order.get("params_hash")),
        "model_run_id": lineage.get("model_run_id") or run.get("run_id"),
        "model_name": lineage.get("model_name") or registered.get("name"),
        "model_version": lineage.get("model_version") or registered.get("version"),
        "experiment_id": run.get("experiment_id"),
        "dataset_digest": run.get("dataset_digest"),
        "code_commit": lineage.get("code_commit"),
        "code_dirty": lineage.get("code_dirty"),
        "features_hash": features_hash,
    }
    timestamps = {
        "order_created": _stamp(order.get("created_ts")),
        "order_updated": _stamp(order.get("updated_ts")),
        "lineage_created": _stamp(lineage.get("created_ts")),
        "events": [{"seq": e["seq"], "kind": e["kind"], **(_stamp(e["ts"]) or {})} for e in record.events],
        "fills": [{"exec_id": f["exec_id"], **(_stamp(f["ts"]) or {})} for f in record.fills],
        "model_run_start": _stamp(run.get("start_time")),
        "model_run_end": _stamp(run.get("end_time")),
        "model_version_created": _stamp(registered.get("creation_timestamp")),
        "pulled": _stamp(pulled_ms),
    }
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "trade_id": order["trade_id"],
        "ids": ids,
        "timestamps": timestamps,
        "audit_chain_head": record.chain_head,
        "sources": sources,
        "files": {},
    }


# --- pull ------------------------------------------------------------------------------------------
def build_files(
    db: Database,
    trade_id: str,
    *,
    blobs: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    status: Callable[[str], None] = lambda message: None,
    now_ms: int | None = None,
) -> dict[str, bytes]:
    """Every member of the bundle (path -> bytes), manifest last; BundleError on bad input."""
    from methtrader.audit.report import render_report

    status(f"reading trade {trade_id} from {db.url}")
    record = read_trade(db, trade_id)
    lineage = record.lineage
    features_hash = (lineage or {}).get("features_hash")
    files: dict[str, bytes] = {}
    features: Any = None
    if features_hash:
        status(f"fetching features blob {features_hash[:12]}…")
        blob = read_blob(blobs, features_hash)
        files[f"{FEATURES_DIR}/{features_hash}.json"] = blob
        try:
            features = json.loads(blob)
        except ValueError:
            features = None
    status("reading the model's MLflow record")
    model = model_record(lineage, tracking_uri)

    pulled_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    from methtrader.ml.blobs import DEFAULT_ROOT, ENV_ROOT

    blob_root = os.fspath(blobs) if blobs is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    sources = {
        "database": db.url,
        "blobs": _safe_uri(blob_root) if features_hash else None,
        "tracking_uri": model.get("tracking_uri"),
    }
    manifest = _manifest(record, model, features_hash, pulled_ms, sources)
    order_doc = {"trade_id": trade_id, "order": record.order, "events": record.events}
    files["order.json"] = dump_json(order_doc)
    files["fills.json"] = dump_json({"trade_id": trade_id, "fills": record.fills})
    files["lineage.json"] = dump_json({"trade_id": trade_id, "lineage": lineage})
    files["model.json"] = dump_json(model)
    # the report shows the data files' hashes; it is itself hashed in the manifest
    data_hashes = {name: sha256_hex(data) for name, data in sorted(files.items())}
    files["report.html"] = render_report(
        manifest=manifest,
        order=order_doc,
        fills=record.fills,
        lineage=lineage,
        model=model,
        features=features,
        file_hashes=data_hashes,
    ).encode("utf-8")
    manifest["files"] = {name: sha256_hex(data) for name, data in sorted(files.items())}
    files[MANIFEST] = dump_json(manifest)
    return files


def pull(
    db: Database,
    trade_id: str,
    out: str | os.PathLike[str],
    *,
    blobs: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    fmt: Format = "dir",
    status: Callable[[str], None] = lambda message: None,
    now_ms: int | None = None,
) -> Path:
    """Write the bundle of `trade_id` at `out` (a directory, or a zip file: `.zip` is appended when
    missing) and return its path. Refuses to replace an existing path; BundleError on bad input."""
    if fmt not in ("dir", "zip"):
        raise BundleError(f"unknown bundle format {fmt!r} (dir or zip)")
    target = Path(out)
    if fmt == "zip" and target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    if target.exists() or target.is_symlink():
        raise BundleError(f"{target} already exists; choose another --out or remove it")
    files = build_files(db, trade_id, blobs=blobs, tracking_uri=tracking_uri, status=status, now_ms=now_ms)
    status(f"writing {target}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "zip":
            _write_zip(target, files, now_ms)
        else:
            _write_dir(target, files)
    except OSError as exc:
        raise BundleError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _write_dir(target: Path, files: Mapping[str, bytes]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.rename(tmp, target)  # fails rather than merging if the target appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_zip(target: Path, files: Mapping[str, bytes], now_ms: int | None) -> None:
    moment = datetime.fromtimestamp((now_ms or time.time() * 1000) / 1000, UTC)
    stamp = (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, moment.second)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, data in files.items():
                    info = zipfile.ZipInfo(name, date_time=stamp)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            raise FileExistsError(17, "File exists", str(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- verify ----------------------------------------------------------------------------------------
def read_bundle(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file of a bundle directory or zip (path -> bytes); BundleError if it cannot be read."""
    path = Path(path)
    try:
        if path.is_dir():
            files = {}
            for item in sorted(path.rglob("*")):
                if item.is_file() or item.is_symlink():
                    files[item.relative_to(path).as_posix()] = item.read_bytes()
            return files
        if path.is_file():
            with zipfile.ZipFile(path) as zf:
                return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{path} is neither a bundle directory nor a readable zip: {exc}") from None
    except (OSError, zipfile.LargeZipFile) as exc:
        raise BundleError(f"cannot read the bundle {path}: {getattr(exc, 'strerror', None) or exc}") from None
    raise BundleError(f"no bundle at {path}")


def verify_bundle(path: str | os.PathLike[str]) -> list[str]:
    """Problems with the bundle at `path` (empty: every hash recomputes and every id agrees).

    BundleError when there is nothing to verify (no such path, unreadable, no manifest)."""
    files = read_bundle(path)
    if MANIFEST not in files:
        raise BundleError(f"{path} has no {MANIFEST}: not a bundle, or its manifest was removed")
    try:
        manifest = json.loads(files[MANIFEST])
    except ValueError as exc:
        raise BundleError(f"{path}/{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BundleError(f"{path}/{MANIFEST} is not a methtrader audit bundle manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: bundle schema version {manifest.get('schema_version')!r} is not {SCHEMA_VERSION}"
        )
    problems: list[str] = []
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return [f"{MANIFEST}: no file list"]
    present = set(files) - {MANIFEST}
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: present but not listed in the manifest")
    for name in sorted(set(listed) & present):
        actual = sha256_hex(files[name])
        if actual != listed[name]:
            problems.append(f"{name}: SHA-256 {actual} differs from the manifest's {listed[name]}")
    for name in sorted(present | set(listed)):
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            problems.append(f"{name}: unsafe path in the bundle")
    problems += _check_features(files, listed, manifest)
    problems += _check_ids(files, manifest)
    return problems


def _check_features(files: Mapping[str, bytes], listed: Mapping[str, str], manifest: Mapping) -> list[str]:
    problems = []
    names = sorted(n for n in set(files) | set(listed) if n.startswith(f"{FEATURES_DIR}/"))
    for name in names:
        match = _FEATURE_NAME.match(name)
        if match is None:
            problems.append(f"{name}: not named features/<sha256>.json")
        elif name in files and sha256_hex(files[name]) != match.group(1):
            problems.append(f"{name}: content hashes to {sha256_hex(files[name])}, not to its name")
    expected = (manifest.get("ids") or {}).get("features_hash")
    if expected and f"{FEATURES_DIR}/{expected}.json" not in listed:
        problems.append(f"{MANIFEST}: features blob {expected} is not listed")
    return problems


def _load(files: Mapping[str, bytes], name: str, problems: list[str]) -> Any:
    if name not in files:
        return None
    try:
        return json.loads(files[name])
    except ValueError as exc:
        problems.append(f"{name}: not JSON ({exc})")
        return None


def _check_ids(files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> list[str]:
    """The ids in the manifest equal those in order, fills, lineage and model files."""
    problems: list[str] = []
    ids = manifest.get("ids") or {}
    trade_id = manifest.get("trade_id")

    def agree(where: str, field: str, value: Any, expected: Any) -> None:
        if value != expected:
            problems.append(f"{where}: {field} {value!r} differs from the manifest's {expected!r}")

    if ids.get("trade_id") != trade_id:
        problems.append(
            f"{MANIFEST}: ids.trade_id {ids.get('trade_id')!r} differs from trade_id {trade_id!r}"
        )
    order_doc = _load(files, "order.json", problems)
    if isinstance(order_doc, dict):
        order = order_doc.get("order") or {}
        agree("order.json", "trade_id", order.get("trade_id"), trade_id)
        agree("order.json", "exchange_order_id", order.get("exchange_order_id"), ids.get("exchange_order_id"))
        agree("order.json", "params_hash", order.get("params_hash"), ids.get("params_hash"))
        events = order_doc.get("events") or []
        agree("order.json", "event seqs", [e.get("seq") for e in events], ids.get("event_seqs"))
        for event in events:
            agree("order.json", f"event {event.get('seq')} trade_id", event.get("trade_id"), trade_id)
    fills_doc = _load(files, "fills.json", problems)
    if isinstance(fills_doc, dict):
        fills = fills_doc.get("fills") or []
        agree("fills.json", "exec_ids", [f.get("exec_id") for f in fills], ids.get("exec_ids"))
        for fill in fills:
            agree("fills.json", f"fill {fill.get('exec_id')} trade_id", fill.get("trade_id"), trade_id)
    lineage_doc = _load(files, "lineage.json", problems)
    if isinstance(lineage_doc, dict) and lineage_doc.get("lineage") is not None:
        lineage = lineage_doc["lineage"]
        agree("lineage.json", "trade_id", lineage.get("trade_id"), trade_id)
        for field in ("params_hash", "model_run_id", "code_commit", "code_dirty", "features_hash"):
            agree("lineage.json", field, lineage.get(field), ids.get(field))
        if isinstance(lineage.get("params"), dict) and params_hash(lineage["params"]) != lineage.get(
            "params_hash"
        ):
            problems.append("lineage.json: params do not hash to params_hash")
    model = _load(files, "model.json", problems)
    if isinstance(model, dict):
        run = model.get("run") or {}
        registered = model.get("registered_model") or {}
        if run:
            agree("model.json", "run_id", run.get("run_id"), ids.get("model_run_id"))
            agree("model.json", "experiment_id", run.get("experiment_id"), ids.get("experiment_id"))
            agree("model.json", "dataset_digest", run.get("dataset_digest"), ids.get("dataset_digest"))
        if registered:
            agree("model.json", "registered model name", registered.get("name"), ids.get("model_name"))
            agree(
                "model.json", "registered model version", registered.get("version"), ids.get("model_version")
            )
            agree("model.json", "registered model run_id", registered.get("run_id"), ids.get("model_run_id"))
    return problems


def bundle_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest's ids and file count, for the CLI."""
    files = read_bundle(path)
    manifest = json.loads(files.get(MANIFEST, b"{}") or b"{}")
    return {"trade_id": manifest.get("trade_id"), "ids": manifest.get("ids"), "files": len(files)}


__all__ = [
    "SCHEMA_VERSION",
    "BundleError",
    "TradeNotFoundError",
    "TradeRecord",
    "build_files",
    "dump_json",
    "pull",
    "read_bundle",
    "read_trade",
    "verify_bundle",
]
