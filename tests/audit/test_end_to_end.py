"""The issue's whole path: a model trained and registered in MLflow, a paper session trading it
with `ml_signal`, every order written ahead with its lineage and features blob, then a regulator
bundle pulled for one of its trades — and the bundle and the audit log verify."""

import json
import os
import subprocess
import sys

from sqlalchemy import select
from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.store import Database, schema
from support import ml


def test_a_paper_session_with_ml_signal_yields_trades_whose_bundles_verify(tmp_path, log_sink):
    uri = ml.tracking_uri(tmp_path)
    trained = ml.train(uri)
    env = {**os.environ, "METHTRADER_MLFLOW_TRACKING_URI": uri}
    session = subprocess.run(
        [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", "0",
         "--strategy", "ml_signal", "-p", f"model={trained['model_uri']}", "-p", "threshold=0.5",
         "--bars", "60", "--speed", "36000"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    log_sink(session.stdout + session.stderr)
    assert session.returncode == 0, session.stderr[-2000:]
    ledger = f"sqlite:///{tmp_path / 'var' / 'methtrader.db'}"
    with Database.from_url(ledger) as db, db.connect() as conn:
        rows = conn.execute(
            select(schema.lineage.c.trade_id, schema.lineage.c.model_run_id, schema.lineage.c.features_hash)
            .join(schema.fills, schema.fills.c.trade_id == schema.lineage.c.trade_id)
            .where(schema.lineage.c.strategy == "ml_signal")
        ).all()
    assert rows, "the session made no filled ml_signal trade"
    trade_id, run_id, features = rows[0]
    assert run_id == trained["run_id"] and len(features) == 64

    runner = CliRunner()
    bundle = tmp_path / "bundle"
    args = ["--url", ledger, "--blobs", str(tmp_path / "var" / "blobs"), "--tracking-uri", uri]
    pulled = runner.invoke(app, ["audit", "pull", trade_id, "--out", str(bundle), *args, "--json"], env=env)
    assert pulled.exit_code == 0, pulled.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["trade_id"] == trade_id and f"features/{features}.json" in json.dumps(manifest)
    verified = runner.invoke(app, ["audit", "verify", str(bundle), "--json"])
    assert verified.exit_code == 0, verified.output
    chain = runner.invoke(app, ["audit", "verify", "--log", "--url", ledger, "--json"])
    assert chain.exit_code == 0, chain.output
