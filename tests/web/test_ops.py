"""/healthz, /readyz and /metrics of a trading process: real Redis (private server, stopped for
the outage), a real SQLite database and an unreachable PostgreSQL port, and the guard's state."""

import math

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from methtrader.exchange.sim.runner import free_port
from methtrader.ops.health import Readiness
from methtrader.ops.metrics import Metrics
from methtrader.risk.guard import RiskGuard
from methtrader.store import Database
from methtrader.web.ops import create_ops_app


def client_for(readiness: Readiness, registry: CollectorRegistry) -> TestClient:
    return TestClient(create_ops_app(registry, readiness))


def test_liveness_and_metrics_answer_before_the_session_starts():
    metrics = Metrics()
    guard = RiskGuard(metrics=metrics.risk)
    client = client_for(Readiness(guard, metrics), metrics.registry)
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 503  # no session yet: the private stream is not up
    assert ready.json()["checks"]["private_stream"] == {"status": "down", "detail": "session starting"}
    assert ready.json()["checks"]["database"]["status"] == "not_configured"  # no ledger given
    text = client.get("/metrics").text
    assert 'methtrader_build_info{commit="' in text and "process_start_time_seconds" in text
    assert 'methtrader_stream_connected{stream="private"} 0.0' in text
    assert "methtrader_var_limit_ratio 0.05" in text
    assert math.isnan(metrics.db_up._value.get())  # no database configured: neither up nor down


def test_database_and_redis_checks_follow_the_real_servers(tmp_path, redis_server, redis_url):
    metrics = Metrics()
    readiness = Readiness(
        RiskGuard(), metrics, Database.from_url(f"sqlite:///{tmp_path / 'ledger.db'}"), redis_url
    )
    checks = readiness()
    assert checks["database"].status == "ok" and checks["redis"].status == "ok"
    assert metrics.db_up._value.get() == 1
    redis_server.stop()
    try:
        down = readiness.redis()
        assert down.status == "down" and "Connection" in down.detail
    finally:
        redis_server.start()
    assert readiness.redis().status == "ok"  # the same client reconnects
    ledger = Database.from_url(f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/x")
    check = Readiness(RiskGuard(), metrics, ledger).ledger()
    assert check.status == "down" and "cannot reach the database" in check.detail and "pw" not in check.detail
    assert metrics.db_up._value.get() == 0


def test_readyz_is_503_with_the_reason_once_the_guard_halts():
    metrics = Metrics()
    guard = RiskGuard(metrics=metrics.risk)
    readiness = Readiness(guard, metrics)
    guard.unknown_state("exchange unreachable", ts=1)
    body = client_for(readiness, metrics.registry).get("/readyz").json()
    assert body["status"] == "not_ready"
    assert body["checks"]["guard"] == {
        "status": "down",
        "detail": "unknown state: exchange unreachable",
        "state": "REDUCING",
    }
