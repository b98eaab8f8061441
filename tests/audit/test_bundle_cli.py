"""`methtrader audit pull` and `methtrader audit verify DIR|ZIP`: exit 0 when all is well, 1 naming each
problem of a bundle, 2 with one line on stderr for bad input (unknown trade, missing blob, MLflow down,
unreadable database, no bundle)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from methtrader.audit import append
from methtrader.cli.main import app
from methtrader.ml.blobs import BlobStore
from support.redis_server import free_port

from .conftest import Trade

runner = CliRunner()


def _pull(trade: Trade, *args: str):
    url = trade.db.engine.url.render_as_string(hide_password=False)
    return runner.invoke(
        app,
        [
            "audit",
            "pull",
            trade.trade_id,
            "--url",
            url,
            "--blobs",
            str(trade.blobs),
            "--tracking-uri",
            trade.run.tracking_uri,
            *args,
        ],
    )


def _one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_pull_then_verify(trade: Trade, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    pulled = _pull(trade, "--out", str(out), "--json")
    assert pulled.exit_code == 0, pulled.output
    summary = json.loads(pulled.stdout)
    assert summary["path"] == str(out) and summary["ids"]["model_run_id"] == trade.run.run_id
    assert set(summary["files"]) >= {"order.json", "fills.json", f"features/{trade.features_hash}.json"}
    assert summary["seconds"] < 15

    ok = runner.invoke(app, ["audit", "verify", str(out)])
    assert ok.exit_code == 0 and f"bundle intact: trade {trade.trade_id}, 7 files" in ok.stdout
    report = json.loads(runner.invoke(app, ["audit", "verify", str(out), "--json"]).stdout)
    assert report["ok"] is True and report["problems"] == [] and report["trade_id"] == trade.trade_id

    (out / "fills.json").write_text("{}")
    (out / "extra.txt").write_text("x")
    broken = runner.invoke(app, ["audit", "verify", str(out)])
    assert broken.exit_code == 1
    assert "BROKEN: fills.json: SHA-256" in broken.stderr
    assert "BROKEN: extra.txt: present but not listed in the manifest" in broken.stderr
    assert json.loads(runner.invoke(app, ["audit", "verify", str(out), "--json"]).stdout)["ok"] is False


def test_zip_and_the_audit_log_together(sqlite_trade: Trade, tmp_path: Path) -> None:
    append(sqlite_trade.db, "order.sent", {"trade_id": sqlite_trade.trade_id})
    pulled = _pull(sqlite_trade, "--out", str(tmp_path / "t"), "--format", "zip")
    assert pulled.exit_code == 0, pulled.output
    assert f"wrote {tmp_path / 't.zip'}" in pulled.stdout
    url = sqlite_trade.db.engine.url.render_as_string(hide_password=False)
    both = runner.invoke(app, ["audit", "verify", str(tmp_path / "t.zip"), "--log", "--url", url])
    assert both.exit_code == 0, both.output
    assert "bundle intact" in both.stdout and "audit log intact: 2 entries" in both.stdout


def test_bad_input_is_one_line_and_exit_2(sqlite_trade: Trade, tmp_path: Path) -> None:
    out = tmp_path / "out"
    trade = sqlite_trade

    unknown = runner.invoke(
        app,
        [
            "audit",
            "pull",
            "nope",
            "--out",
            str(out),
            "--url",
            trade.db.engine.url.render_as_string(hide_password=False),
        ],
    )
    assert "no trade 'nope' in the ledger" in _one_line_error(unknown)

    closed = f"http://127.0.0.1:{free_port()}"
    down = runner.invoke(
        app,
        [
            "audit",
            "pull",
            trade.trade_id,
            "--out",
            str(out),
            "--blobs",
            str(trade.blobs),
            "--url",
            trade.db.engine.url.render_as_string(hide_password=False),
            "--tracking-uri",
            closed,
        ],
    )
    assert f"MLflow tracking server {closed} is unreachable" in _one_line_error(down)

    blob = Path(BlobStore(trade.blobs).path(trade.features_hash))
    blob.unlink()
    missing = _pull(trade, "--out", str(out))
    assert "features blob missing" in _one_line_error(missing)

    no_ledger = runner.invoke(
        app, ["audit", "pull", "t", "--out", str(out), "--url", f"sqlite:///{tmp_path / 'absent.db'}"]
    )
    assert "no ledger at" in _one_line_error(no_ledger)
    assert not (tmp_path / "absent.db").exists()
    unreachable = runner.invoke(
        app, ["audit", "pull", "t", "--out", str(out), "--url", f"postgresql://u@127.0.0.1:{free_port()}/x"]
    )
    assert "cannot read the ledger" in _one_line_error(unreachable)
    bad_format = _pull(trade, "--out", str(out), "--format", "tar")
    assert "--format must be dir or zip" in _one_line_error(bad_format)
    assert not out.exists()

    assert "no bundle at" in _one_line_error(runner.invoke(app, ["audit", "verify", str(tmp_path / "none")]))
    (tmp_path / "empty").mkdir()
    no_manifest = runner.invoke(app, ["audit", "verify", str(tmp_path / "empty")])
    assert "has no manifest.json" in _one_line_error(no_manifest)
    nothing = runner.invoke(app, ["audit", "verify"])
    assert "nothing to verify" in _one_line_error(nothing)
