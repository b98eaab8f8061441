"""End to end: a real paper session (the simulator, the ledger written ahead by the live runner) makes
trades; each one's bundle pulls and verifies, and its lineage is what the runner recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from methtrader.audit.bundle import pull, verify_bundle
from methtrader.store import Database, schema


def test_bundles_of_a_paper_session_verify(tmp_path: Path, log_sink) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {**os.environ, "METHTRADER_DATABASE_URL": url, "METHTRADER_BLOBS_URL": str(tmp_path / "blobs")}
    result = subprocess.run(
        [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", "0",
         "-p", "fast=2", "-p", "slow=5", "--bars", "20", "--speed", "36000"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    log_sink(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-2000:]
    with Database.from_url(url) as db:
        with db.connect() as conn:
            trade_ids = list(conn.execute(select(schema.orders.c.trade_id)).scalars())
        assert len(trade_ids) >= 2
        for trade_id in trade_ids[:2]:
            bundle = pull(db, trade_id, tmp_path / "bundles" / trade_id, blobs=tmp_path / "blobs")
            assert verify_bundle(bundle) == []
            lineage = json.loads((bundle / "lineage.json").read_text())["lineage"]
            assert lineage["strategy"] == "sma_cross" and lineage["params"]["fast"] == 2
            assert lineage["risk_snapshot"]["state"] == "ACTIVE" and lineage["code_commit"]
            manifest = json.loads((bundle / "manifest.json").read_text())
            assert manifest["ids"]["exec_ids"] and manifest["ids"]["model_run_id"] is None
