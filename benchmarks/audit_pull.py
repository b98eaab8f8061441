"""Regulator pull with 1,000,000 trades in PostgreSQL: how long `methtrader audit pull` takes.

    .venv/bin/python benchmarks/audit_pull.py [--trades N] [--repeat R] [--json]

Starts its own private PostgreSQL (tests/support/postgres_server.py: local binaries, a free port, a
temporary directory), migrates the ledger schema with Alembic, and bulk-loads N trades — one order,
two events, two fills and one lineage row each — with PostgreSQL COPY (psycopg's `cursor.copy`, CSV
streamed in chunks; foreign-key triggers off for the load with `session_replication_role = replica`,
then ANALYZE). Every lineage row points to one real features blob and one real MLflow run with a
registered version (a tiny scikit-learn model in a temporary SQLite tracking store).

It then pulls the trade in the middle, best of R each:
* `pull_seconds` (cold): PostgreSQL restarted (its buffer cache empty), then a new Python process
  imports `methtrader.audit.bundle` and times one `pull()`: connecting, the ledger queries, the blob,
  importing MLflow and opening its store, the run and version, writing and fsyncing the files;
  `cold_process_seconds` is that process's whole life, interpreter start and imports included;
* `warm_seconds`: `pull()` again in this process (connection pooled, MLflow loaded);
* `cli_seconds`: `methtrader audit pull` once, end to end, and `cli_startup_seconds` what
  `methtrader --help` alone costs (importing every command's modules).
The target is `pull_seconds` under 2 s. Each bundle is verified. Prints one JSON object (`--json`)
or a summary line; exit 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/support: the private PostgreSQL and the tiny MLflow model

TARGET_S = 2.0
# a fresh interpreter: imports first (not timed), then one pull on a just-restarted PostgreSQL (timed)
COLD_PULL = """
import json, sys, time
from methtrader.audit.bundle import pull
from methtrader.store import Database
url, trade_id, out, blobs, tracking = sys.argv[1:]
started = time.perf_counter()
with Database.from_url(url) as db:
    pull(db, trade_id, out, blobs=blobs, tracking_uri=tracking)
print(json.dumps({"pull_seconds": time.perf_counter() - started}))
"""
T0 = 1_764_000_000_000
CHUNK = 50_000
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _copy(cursor, table: str, columns: str, rows: Iterator[str]) -> None:
    """COPY table (columns) FROM STDIN (CSV), written in chunks of CHUNK lines."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append(row)
            if len(buffer) >= CHUNK:
                copy.write("".join(buffer))
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))


def load(url: str, trades: int, features_hash: str, run, params_hash: str, say) -> dict[str, float]:
    """N trades into a migrated ledger with COPY; seconds per table."""
    import psycopg

    from methtrader.store.types import canonical_json

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    params = canonical_json({"model": f"models:/{run.name}/{run.version}", "threshold": 0.55, "qty": "0.010"})
    risk = canonical_json(
        {"guard_state": "ACTIVE", "var_99_1d": "123.45", "limits": {"var_limit": 0.05}, "equity": "10000"}
    ).replace('"', '""')
    params_csv = params.replace('"', '""')
    seconds: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=False) as conn, conn.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # no FK triggers during the bulk load

        def timed(table: str, columns: str, rows: Iterator[str]) -> None:
            say(f"COPY {trades:,} trades' {table}")
            started = time.perf_counter()
            _copy(cursor, table, columns, rows)
            seconds[table] = round(time.perf_counter() - started, 2)

        timed(
            "orders",
            "trade_id,exchange_order_id,symbol,side,type,time_in_force,qty,price,reduce_only,status,"
            "filled_qty,reject_reason,mode,strategy,params_hash,created_ts,updated_ts",
            (
                f"t-{i:07d},ex-{i:07d},BTCUSDT,{'Buy' if i % 2 else 'Sell'},Limit,GTC,0.010,"
                f'{100 + i % 1000}.5,false,Filled,0.010,"",paper,ml_signal,{params_hash},'
                f"{T0 + i * 1000},{T0 + i * 1000 + 500}\n"
                for i in range(trades)
            ),
        )
        timed(
            "order_events",
            "trade_id,seq,kind,status,payload,ts",
            (
                f"t-{i:07d},1,sent,,{{}},{T0 + i * 1000}\n"
                f"t-{i:07d},2,filled,Filled,{{}},{T0 + i * 1000 + 500}\n"
                for i in range(trades)
            ),
        )
        timed(
            "fills",
            "exec_id,trade_id,symbol,side,qty,price,fee,liquidity,realised_pnl,is_liquidation,ts",
            (
                f"e-{i:07d}-1,t-{i:07d},BTCUSDT,Buy,0.004,{100 + i % 1000}.5,0.0002,maker,0,false,"
                f"{T0 + i * 1000 + 200}\n"
                f"e-{i:07d}-2,t-{i:07d},BTCUSDT,Buy,0.006,{100 + i % 1000}.5,0.0003,maker,0,false,"
                f"{T0 + i * 1000 + 500}\n"
                for i in range(trades)
            ),
        )
        timed(
            "lineage",
            "trade_id,strategy,params,params_hash,model_run_id,model_name,model_version,code_commit,"
            "code_dirty,features_hash,risk_snapshot,created_ts",
            (
                f't-{i:07d},ml_signal,"{params_csv}",{params_hash},{run.run_id},{run.name},{run.version},'
                f'{COMMIT},false,{features_hash},"{risk}",{T0 + i * 1000}\n'
                for i in range(trades)
            ),
        )
        conn.commit()
        say("ANALYZE")
        started = time.perf_counter()
        cursor.execute("ANALYZE")
        conn.commit()
        seconds["analyze"] = round(time.perf_counter() - started, 2)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    say = (lambda message: print(f"… {message}", file=sys.stderr, flush=True)) if args.json else print

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from methtrader.audit.bundle import pull, verify_bundle
    from methtrader.ml.blobs import BlobStore, decision_blob
    from methtrader.store import Database
    from methtrader.store.ledger import params_hash
    from support.mlflow_run import log_tiny_model
    from support.postgres_server import PostgresServer

    work = Path(tempfile.mkdtemp(prefix="methtrader-audit-bench-"))
    server = PostgresServer()
    try:
        say("starting a private PostgreSQL")
        server.start()
        url = server.create_database("ledger")
        with Database.from_url(url) as db:
            db.upgrade()
        say("logging a tiny model to MLflow")
        run = log_tiny_model(work / "mlflow")
        blobs = work / "blobs"
        import numpy as np

        features_hash = BlobStore(blobs).put(
            decision_blob(
                {"ret_1": 0.0149, "rsi_14": 57.25, "vol_20": 0.021},
                {"close": np.linspace(100.0, 102.0, 64)},
                symbol="BTCUSDT",
            )
        )
        phash = params_hash({"model": f"models:/{run.name}/{run.version}", "threshold": 0.55, "qty": "0.010"})
        started = time.perf_counter()
        load_seconds = load(url, args.trades, features_hash, run, phash, say)
        load_total = time.perf_counter() - started
        trade_id = f"t-{args.trades // 2:07d}"

        cold, cold_process = [], []
        for attempt in range(args.repeat):
            server.stop()
            server.start()  # an empty buffer cache
            out = work / f"cold-{attempt}"
            say(f"cold pull {attempt + 1}/{args.repeat} (new process, PostgreSQL just restarted)")
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", COLD_PULL, url, trade_id, str(out), str(blobs), run.tracking_uri],
                capture_output=True, text=True, cwd=work,
            )  # fmt: skip
            cold_process.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"pull failed: {result.stderr.strip()}")
            cold.append(json.loads(result.stdout.strip().splitlines()[-1])["pull_seconds"])
            assert verify_bundle(out) == [], verify_bundle(out)

        cli = REPO / ".venv" / "bin" / "methtrader"
        command = [str(cli) if cli.exists() else shutil.which("methtrader") or "methtrader"]
        say("methtrader audit pull (the whole command, once)")
        started = time.perf_counter()
        result = subprocess.run(
            [*command, "audit", "pull", trade_id, "--out", str(work / "cli"), "--url", url,
             "--blobs", str(blobs), "--tracking-uri", run.tracking_uri, "--json"],
            capture_output=True, text=True, cwd=work,
        )  # fmt: skip
        cli_seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"audit pull failed: {result.stderr.strip()}")
        started = time.perf_counter()
        subprocess.run([*command, "--help"], capture_output=True, check=True, cwd=work)
        cli_startup = time.perf_counter() - started

        warm = []
        with Database.from_url(url) as db:
            pull(db, trade_id, work / "warm-up", blobs=blobs, tracking_uri=run.tracking_uri)
            for attempt in range(args.repeat):
                out = work / f"warm-{attempt}"
                started = time.perf_counter()
                pull(db, trade_id, out, blobs=blobs, tracking_uri=run.tracking_uri)
                warm.append(time.perf_counter() - started)
                assert verify_bundle(out) == []
            zip_started = time.perf_counter()
            pull(db, trade_id, work / "warm-zip", blobs=blobs, tracking_uri=run.tracking_uri, fmt="zip")
            zip_seconds = time.perf_counter() - zip_started
            with db.connect() as conn:
                counts = {
                    table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
                    for table in ("orders", "order_events", "fills", "lineage")
                }
        bundle = work / "warm-0"
        bundle_files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "trades": args.trades,
        "rows": counts,
        "trade_id": trade_id,
        "pull_seconds": round(min(cold), 3),
        "cold_pull_seconds": [round(s, 3) for s in cold],
        "cold_process_seconds": round(min(cold_process), 3),
        "warm_seconds": round(min(warm), 4),
        "cli_seconds": round(cli_seconds, 3),
        "cli_startup_seconds": round(cli_startup, 3),
        "warm_zip_seconds": round(zip_seconds, 4),
        "target_seconds": TARGET_S,
        "meets_target": min(cold) < TARGET_S,
        "load_seconds": round(load_total, 1),
        "load_seconds_by_table": load_seconds,
        "bulk_load": "PostgreSQL COPY FROM STDIN (CSV) via psycopg cursor.copy",
        "bundle_files": bundle_files,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.trades:,} trades: pull {result['pull_seconds']} s cold (best of {args.repeat}), "
            f"{result['warm_seconds']} s warm; target {TARGET_S} s: "
            + ("met" if result["meets_target"] else "MISSED")
        )
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
