"""Readiness of a trading process: may it trade right now? Each dependency is checked on its own
(ledger database, Redis, the private stream's freshness, the risk guard's state) and reported
with a status and a reason; the database and Redis checks also feed their metrics."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from methtrader.risk.state import TradingState

if TYPE_CHECKING:
    from methtrader.engine.live import LiveRunner
    from methtrader.ops.metrics import Metrics
    from methtrader.risk.guard import RiskGuard
    from methtrader.store import Database

OK, DOWN, NOT_CONFIGURED = "ok", "down", "not_configured"


@dataclass(frozen=True)
class Check:
    """One check: `status` ok, down or not_configured (which does not block), and why."""

    status: str
    detail: str = ""
    data: dict[str, object] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return self.status in (OK, NOT_CONFIGURED)


@dataclass
class Readiness:
    """What `/readyz` reports. `runner` is attached once the session has started."""

    guard: "RiskGuard"
    metrics: "Metrics | None" = None
    database: "Database | None" = None  # the ledger the session writes
    redis_url: str | None = None
    stale_after_s: float = 60.0
    runner: "LiveRunner | None" = None
    timeout_s: float = 2.0
    _redis: object = None  # one client, reconnecting by itself after an outage

    def __call__(self) -> dict[str, Check]:
        return {
            "database": self.ledger(),
            "redis": self.redis(),
            "private_stream": self.private_stream(),
            "guard": self.guard_state(),
        }

    def ledger(self) -> Check:
        if self.database is None:
            return Check(NOT_CONFIGURED, "no ledger database")
        check = _timed(self.database.ping)
        if self.metrics is not None:
            self.metrics.db_up.set(1 if check.passes else 0)
        return check

    def redis(self) -> Check:
        if not self.redis_url:
            return Check(NOT_CONFIGURED, "METHTRADER_REDIS_URL is not set")
        return _timed(self._ping_redis)

    def private_stream(self) -> Check:
        runner = self.runner
        if runner is None:
            return Check(DOWN, "session starting")
        age = runner.feed.frame_age_s("private")
        if age is None:
            state = runner.feed.states.get("private", "")
            return Check(DOWN, "private stream not connected", {"state": state})
        if age > self.stale_after_s:
            return Check(DOWN, f"no frame for {age:.0f} s", {"age_s": round(age, 1)})
        return Check(OK, "", {"age_s": round(age, 1)})

    def guard_state(self) -> Check:
        machine = self.guard.state
        state = machine.state
        data: dict[str, object] = {"state": state.name}
        if state is TradingState.ACTIVE:
            return Check(OK, "", data)
        return Check(DOWN, machine.reason, data)

    def _ping_redis(self) -> None:
        import redis

        client = self._redis
        if client is None:
            client = redis.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
            self._redis = client
        client.ping()  # type: ignore[attr-defined]


def _timed(ping: Callable[[], None]) -> Check:
    start = time.perf_counter()
    try:
        ping()
    except Exception as exc:
        return Check(DOWN, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    return Check(OK, "", {"latency_ms": round((time.perf_counter() - start) * 1000, 2)})
