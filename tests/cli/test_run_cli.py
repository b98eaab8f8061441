"""`methtrader run`: a short paper session end to end, /metrics while it runs, and the one-line
errors of bad options and missing live credentials."""

import json
import os
import subprocess
import sys
import time
from decimal import Decimal

from typer.testing import CliRunner

from methtrader.cli.main import app
from methtrader.exchange.sim.runner import free_port
from support.http import get
from support.slack import SlackReceiver

runner = CliRunner()


def start_session(tmp_path, port: int, *args: str, webhook: str = "") -> subprocess.Popen:
    env = {**os.environ, "METHTRADER_SLACK_WEBHOOK_URL": webhook}
    return subprocess.Popen(
        [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", str(port),
         "-p", "fast=2", "-p", "slow=5", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def poll(proc: subprocess.Popen, port: int, path: str, done, timeout: float = 60) -> tuple[int, str]:
    """GET `path` until `done(status, body)` or the process ends; the last answer."""
    answer = (0, "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        status, body = get(port, path)
        if status:  # something answered: keep it
            answer = (status, body)
            if done(*answer):
                break
        time.sleep(0.2)
    return answer


def test_paper_session_serves_metrics_health_readiness_and_json_logs(tmp_path, log_sink):
    port = free_port()
    slack = SlackReceiver()  # its URL carries a test secret: no log line may show it
    proc = start_session(tmp_path, port, "--bars", "40", "--speed", "20000", webhook=slack.url)
    _, body = poll(proc, port, "/metrics", lambda _, text: "methtrader_fills_total 1.0" in text)
    health = get(port, "/healthz")
    status, ready = poll(proc, port, "/readyz", lambda code, _: code == 200)
    out, err = proc.communicate(timeout=90)
    slack.close()
    log_sink(out + err)
    assert proc.returncode == 0, err
    assert health == (200, '{"status":"alive"}')
    assert status == 200 and json.loads(ready)["checks"]["private_stream"]["status"] == "ok"
    for name in ("methtrader_guard_state", "methtrader_var_usdt", "methtrader_bars_processed_total",
                 "methtrader_decision_latency_seconds_count", 'methtrader_orders_total{status="submitted"}',
                 'methtrader_stream_connected{stream="private"} 1.0', "methtrader_build_info"):  # fmt: skip
        assert name in body, name
    assert "methtrader_bybit_rate_limit_utilisation" in body  # the governor's monitor, same endpoint
    assert "fills" in err and "risk guard" in err  # the human summary; stdout carries the logs
    records = [json.loads(line) for line in out.splitlines()]  # every line is one JSON event
    events = {r["event"] for r in records}
    assert {"session starting", "order placed", "fill", "session stopped"} <= events
    assert all(list(r)[:6] == ["timestamp", "level", "event", "app", "env", "component"] for r in records)
    checked = runner.invoke(app, ["logs", "check-labels", "-", "--json"], input=out)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["ok"] is True
    state = json.loads((tmp_path / "var" / "run-state.json").read_text())
    assert state["bars"] >= 40 and state["open_orders"] == [] and state["guard_state"] == "ACTIVE"


def test_brake_reaches_a_running_session_and_one_started_later(tmp_path, log_sink):
    """`methtrader brake` from another process: the running session flattens and halts between
    bars, /readyz turns 503, Slack hears of it; a session started while braked halts at once."""
    port = free_port()
    slack = SlackReceiver()
    proc = start_session(tmp_path, port, "--bars", "400", "--speed", "4000", webhook=slack.url)
    poll(proc, port, "/metrics", lambda _, text: "methtrader_fills_total 3.0" in text)
    braked = runner.invoke(
        app, ["brake", "--reason", "test: runaway strategy", "--state-dir", str(tmp_path / "var")]
    )
    assert braked.exit_code == 0, braked.output
    status, ready = poll(proc, port, "/readyz", lambda code, _: code == 503)
    _, metrics = poll(
        proc, port, "/metrics", lambda _, text: 'methtrader_liquidations_total{cause="brake"}' in text
    )
    proc.terminate()  # Ctrl-C of an operator: the session stops cleanly
    out, err = proc.communicate(timeout=60)
    slack.close()
    log_sink(out + err)
    assert any("BRAKE" in text and "runaway strategy" in text for text in slack.texts), slack.texts
    assert any(json.loads(line).get("kind") == "brake" for line in out.splitlines())
    assert status == 503 and json.loads(ready)["checks"]["guard"]["state"] == "HALTED"
    assert "methtrader_guard_state 2.0" in metrics
    state = json.loads((tmp_path / "var" / "run-state.json").read_text())
    assert state["guard_state"] == "HALTED" and Decimal(state["position"]) == 0 and state["open_orders"] == []

    later = start_session(tmp_path, free_port(), "--bars", "3", "--speed", "20000")
    later.communicate(timeout=90)
    state = json.loads((tmp_path / "var" / "run-state.json").read_text())
    assert later.returncode == 0 and state["guard_state"] == "HALTED" and Decimal(state["position"]) == 0


def test_bad_options_and_missing_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("METHTRADER_API_KEY", raising=False)
    monkeypatch.delenv("METHTRADER_API_SECRET", raising=False)
    cases = [
        (["run", "--mode", "backtest"], "--mode must be paper or live"),
        (["run", "--mode", "live", "--metrics-port", "0"], "needs METHTRADER_API_KEY"),
        (["run", "--mode", "live", "--network", "mainnet", "--metrics-port", "0"], "--i-mean-mainnet"),
        (["run", "--speed", "0", "--metrics-port", "0"], "--speed must be positive"),
        (["run", "-p", "fast=x", "--metrics-port", "0"], "fast='x' is not a valid int"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert (
            result.stderr.startswith("error: ")
            and message in result.stderr
            and result.stderr.count("\n") == 1
        )


def test_secret_files_are_read_and_never_echoed(tmp_path, monkeypatch):
    from methtrader.cli.run import secret

    key_file = tmp_path / "key"
    key_file.write_text("s3cr3t-key\n")
    monkeypatch.setenv("METHTRADER_API_KEY_FILE", str(key_file))
    assert secret("METHTRADER_API_KEY") == "s3cr3t-key"
    monkeypatch.setenv("METHTRADER_API_KEY_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("METHTRADER_API_SECRET", "x")
    result = runner.invoke(app, ["run", "--mode", "live", "--metrics-port", "0"])
    assert result.exit_code == 2 and "cannot read" in result.stderr and "s3cr3t" not in result.stderr


def test_database_password_comes_from_a_secret_file_and_is_never_logged(tmp_path, monkeypatch, caplog):
    import logging

    from methtrader.cli.run import database_url
    from support.secrets import DB_PASSWORD

    (tmp_path / "pw").write_text(DB_PASSWORD + "\n")
    monkeypatch.setenv(
        "METHTRADER_DATABASE_URL", f"postgresql+psycopg://trader@127.0.0.1:{free_port()}/ledger"
    )
    monkeypatch.setenv("METHTRADER_DATABASE_PASSWORD_FILE", str(tmp_path / "pw"))
    url = database_url()
    assert url is not None and f"trader:{DB_PASSWORD}@" in url
    with caplog.at_level(logging.INFO):
        logging.getLogger("methtrader.test").warning("connecting to %s", url)
    assert DB_PASSWORD not in caplog.text and "<redacted>" in caplog.text
    monkeypatch.setenv("METHTRADER_DATABASE_URL", "not a url")
    result = runner.invoke(app, ["run", "--metrics-port", "0", "--bars", "1"])
    assert result.exit_code == 2 and "METHTRADER_DATABASE_URL is not a database URL" in result.stderr


def ledger_rows(db_path, query: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute(query).fetchall()


def test_brake_and_its_guard_change_are_in_the_ledger_on_one_time_base(tmp_path, log_sink):
    """Regression (issue 19.6): `brake` left control_actions empty, and guard_state_changes.ts held
    replay-bar times (2019) beside wall-clock ones. Now the brake is recorded once (who, why, when,
    account), every guard row's ts is the wall clock and its bar time sits in bar_ts."""
    started_ms = int(time.time() * 1000)
    port = free_port()
    proc = start_session(tmp_path, port, "--bars", "400", "--speed", "4000")
    poll(proc, port, "/metrics", lambda _, text: "methtrader_fills_total 2.0" in text)
    braked = runner.invoke(app, ["brake", "--reason", "test: audit", "--state-dir", str(tmp_path / "var")])
    assert braked.exit_code == 0, braked.output
    poll(proc, port, "/readyz", lambda code, _: code == 503)
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    log_sink(out + err)
    later = start_session(tmp_path, free_port(), "--bars", "3", "--speed", "20000")  # re-applies the brake
    log_sink("".join(later.communicate(timeout=90)))
    db = tmp_path / "var" / "methtrader.db"
    actions = ledger_rows(db, "SELECT account, seq, action, why, who, ts FROM control_actions")
    assert [row[:4] for row in actions] == [("default", 1, "brake", "test: audit")]
    assert actions[0][4] and actions[0][5] >= started_ms
    changes = ledger_rows(db, "SELECT ts, bar_ts, to_state FROM guard_state_changes")
    assert changes and all(ts >= started_ms for ts, _, _ in changes)  # wall clock, every row
    assert any(
        state == "HALTED" and bar_ts is not None and bar_ts < started_ms for _, bar_ts, state in changes
    )
    verified = runner.invoke(app, ["audit", "verify", "--log", "--url", f"sqlite:///{db}"])
    assert verified.exit_code == 0, verified.output


def test_two_paper_sessions_keep_every_fill_in_one_ledger(tmp_path, log_sink):
    """Regression (issue 19.1, 19.2, 19.5): the in-process simulator numbered executions from E1 in
    each session, so the second session's fills were dropped, and it raised a false reconciliation
    incident against the first session's position. Now both sessions' fills are all in the ledger,
    every trade bundles with its fills, nothing is reported, and the database file alone holds it."""
    import shutil

    logged: list[dict] = []
    for _ in range(2):
        proc = start_session(tmp_path, free_port(), "--bars", "40", "--speed", "20000")
        out, err = proc.communicate(timeout=120)
        log_sink(out + err)
        assert proc.returncode == 0, err
        logged += [json.loads(line) for line in out.splitlines()]
    fills = {r["exec_id"]: r["trade_id"] for r in logged if r["event"] == "fill"}
    sessions = [r for r in logged if r["event"] == "session stopped"]
    assert len(sessions) == 2 and all(s["fills"] > 0 for s in sessions)
    assert len(fills) == sum(s["fills"] for s in sessions)
    assert not [r for r in logged if "reconciliation" in json.dumps(r) and r["level"] != "info"]
    db = tmp_path / "var" / "methtrader.db"
    assert not (tmp_path / "var" / "methtrader.db-wal").exists()  # checkpointed on the clean stop
    alone = tmp_path / "copy.db"
    shutil.copy(db, alone)  # the file alone, without -wal or -shm, is the whole ledger
    stored = dict(ledger_rows(alone, "SELECT exec_id, trade_id FROM fills"))
    assert stored == fills
    assert len(ledger_rows(alone, "SELECT DISTINCT venue FROM fills")) == 2
    assert ledger_rows(alone, "SELECT count(*) FROM instruments") == [(1,)]
    snapshots = ledger_rows(alone, "SELECT count(*) FROM position_snapshots")[0][0]
    assert snapshots >= len(fills) and ledger_rows(alone, "SELECT count(*) FROM equity_snapshots")[0][0] > 0
    for trade_id in set(fills.values()):
        target = tmp_path / "bundles" / trade_id
        pulled = runner.invoke(
            app, ["audit", "pull", trade_id, "--out", str(target), "--url", f"sqlite:///{db}"]
        )
        assert pulled.exit_code == 0, pulled.output
        bundled = json.loads((target / "fills.json").read_text())["fills"]
        assert sorted(f["exec_id"] for f in bundled) == sorted(e for e, t in fills.items() if t == trade_id)
