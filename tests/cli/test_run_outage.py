"""The ledger's PostgreSQL (the private test server) is stopped in the middle of a paper session
and started again: the session blocks new exposure, journals, says so on /readyz and /metrics,
replays once the database is back and trades on — the ledger ends equal to the session's fills."""

import json
import os
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from methtrader.exchange.sim.runner import free_port
from methtrader.store import Database, schema
from support.http import get


def metric(port: int, name: str) -> float:
    _, text = get(port, "/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return float("nan")


def guard_state(port: int) -> str:
    code, body = get(port, "/readyz")
    return json.loads(body)["checks"]["guard"]["state"] if code else ""


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_paper_session_survives_a_database_outage(tmp_path, postgres_server, log_sink):
    url = postgres_server.create_database()
    port = free_port()
    env = {**os.environ, "METHTRADER_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "methtrader.cli.main", "run", "--quiet", "--metrics-port", str(port),
         "-p", "fast=2", "-p", "slow=5", "--bars", "100000", "--speed", "3000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for(lambda: metric(port, "methtrader_fills_total") >= 2, proc)
        assert metric(port, "methtrader_db_up") == 1
        postgres_server.stop()
        try:
            wait_for(lambda: guard_state(port) == "REDUCING", proc)
            checks = json.loads(get(port, "/readyz")[1])["checks"]
            assert checks["guard"]["state"] == "REDUCING" and "database" in checks["guard"]["detail"]
            assert checks["database"]["status"] == "down"
            wait_for(lambda: metric(port, "methtrader_journal_backlog_events") >= 1, proc)
            assert metric(port, "methtrader_db_up") == 0
            fills_during = metric(port, "methtrader_fills_total")
        finally:
            postgres_server.start()
        wait_for(lambda: get(port, "/readyz")[0] == 200, proc)  # replayed: ACTIVE again
        assert metric(port, "methtrader_journal_backlog_events") == 0
        wait_for(lambda: metric(port, "methtrader_fills_total") >= fills_during + 2, proc)  # trading on
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        log_sink(out + err)
    state = json.loads((tmp_path / "var" / "run-state.json").read_text())
    with Database.from_url(url) as db, db.connect() as conn:
        fills = conn.execute(select(func.count()).select_from(schema.fills)).scalar_one()
        orders = conn.execute(select(schema.orders.c.trade_id, schema.orders.c.status)).all()
        changes = conn.execute(select(schema.guard_state_changes.c.to_state)).scalars().all()
        lineage = conn.execute(select(func.count()).select_from(schema.lineage)).scalar_one()
    assert fills == state["fills"]  # every fill of the session once: none lost, none doubled
    assert lineage == len(orders) and all(status != "New" for _, status in orders)
    assert changes[:2] == ["REDUCING", "ACTIVE"]  # the outage and its end, written through the journal
