"""`methtrader audit verify --log`: exit 0 on an intact chain, 1 naming the tampered row, on both
backends; 2 for a database without an audit log."""

import json

from sqlalchemy import text
from typer.testing import CliRunner

from methtrader.audit import append
from methtrader.cli.main import app
from methtrader.store import Database

runner = CliRunner()
T0 = 1_764_000_000_000


def test_intact_then_edited_then_deleted(database: Database, database_url: str) -> None:
    for i in range(1, 6):
        append(database, "order.sent", {"trade_id": f"t-{i}"}, ts=T0 + i)
    ok = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert ok.exit_code == 0, ok.output
    assert "audit log intact: 5 entries" in ok.stdout
    as_json = json.loads(
        runner.invoke(app, ["audit", "verify", "--log", "--url", database_url, "--json"]).stdout
    )
    assert as_json["ok"] is True and as_json["rows"] == 5 and as_json["break"] is None

    with database.begin() as conn:
        conn.execute(text("UPDATE audit_log SET kind = 'order.cancelled' WHERE id = 2"))
    edited = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert edited.exit_code == 1
    assert "audit log row 2 (order.cancelled, 2025-11-24T16:00:00.002Z): edited" in edited.stderr
    report = json.loads(
        runner.invoke(app, ["audit", "verify", "--log", "--url", database_url, "--json"]).stdout
    )
    assert report["ok"] is False and report["break"]["id"] == 2 and report["break"]["problem"] == "edited"

    with database.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 2"))
    deleted = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert deleted.exit_code == 1
    assert "audit log row 3 (order.sent, 2025-11-24T16:00:00.003Z): deleted: row 2 missing" in deleted.stderr


def test_inserted_row_exits_1(database: Database, database_url: str) -> None:
    for i in range(1, 4):
        append(database, "fill", {"exec_id": f"e-{i}"}, ts=T0 + i)
    with database.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (id, ts, kind, payload, prev_hash, hash) "
                "VALUES (4, 1, 'fill', '{}', 'x', 'y')"
            )
        )
    result = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert (
        result.exit_code == 1 and "audit log row 4 (fill, " in result.stderr and ": inserted" in result.stderr
    )


def test_a_database_without_an_audit_log_is_bad_input(tmp_path) -> None:
    result = runner.invoke(app, ["audit", "verify", "--log", "--url", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert result.exit_code == 2 and "has no audit log (run `methtrader db upgrade` first)" in result.stderr
