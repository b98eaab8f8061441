"""Prometheus metrics of the risk guard: VaR, ES, equity, drawdown, trading state, denied orders
by reason and liquidations. Labels are fixed, low-cardinality codes — never ids."""

import math
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from methtrader.risk.guard import RiskGuard


class RiskMetrics:
    """One set of metrics in its own registry (the process exposes it on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None, min_interval_s: float = 0.05) -> None:
        self.registry = registry or CollectorRegistry()
        # a scrape every few seconds sees no difference, a backtest evaluating 10⁵ bars a second does
        self.min_interval_s = min_interval_s
        self._observed_at = -math.inf
        r = self.registry
        self.var = Gauge("methtrader_var_usdt", "Value-at-Risk of open positions (99%, 1 day).", registry=r)
        self.es = Gauge(
            "methtrader_expected_shortfall_usdt", "Expected shortfall of open positions.", registry=r
        )
        self.var_ratio = Gauge("methtrader_var_equity_ratio", "VaR as a fraction of equity.", registry=r)
        self.equity = Gauge("methtrader_equity_usdt", "Account equity marked at the last close.", registry=r)
        self.drawdown = Gauge(
            "methtrader_drawdown_ratio", "Current drawdown below the equity peak.", registry=r
        )
        self.max_drawdown = Gauge("methtrader_max_drawdown_ratio", "Largest drawdown so far.", registry=r)
        self.var_limit = Gauge(
            "methtrader_var_limit_ratio", "The guard's VaR limit as a fraction of equity.", registry=r
        )
        self.drawdown_limit = Gauge(
            "methtrader_drawdown_limit_ratio",
            "The tightest drawdown at which the guard acts (reduce or halt); NaN when off.",
            registry=r,
        )
        self.state = Gauge(
            "methtrader_guard_state", "Trading state: 0 ACTIVE, 1 REDUCING, 2 HALTED.", registry=r
        )
        self.denied_orders = Counter(
            "methtrader_orders_denied", "Orders denied by the risk guard.", ["reason"], registry=r
        )
        self.liquidations = Counter(
            "methtrader_liquidations", "Liquidations of the whole book.", ["cause"], registry=r
        )

    def configure(self, guard: "RiskGuard") -> None:
        """The guard's limits, exported so alerts compare against the configured values."""
        config = guard.config
        self.var_limit.set(config.var_limit if config.var_limit is not None else float("nan"))
        levels = [v for v in (config.drawdown_reduce, config.drawdown_halt) if v is not None]
        self.drawdown_limit.set(min(levels) if levels else float("nan"))

    def observe(self, guard: "RiskGuard", force: bool = False) -> None:
        """Gauges from the guard's last evaluation, at most every `min_interval_s` unless `force`."""
        now = time.monotonic()
        if not force and now - self._observed_at < self.min_interval_s:
            return
        self._observed_at = now
        self.var.set(guard.last_var)
        self.es.set(guard.last_es)
        self.equity.set(guard.last_equity)
        self.var_ratio.set(guard.last_var / guard.last_equity if guard.last_equity > 0 else float("nan"))
        self.drawdown.set(guard.drawdown.drawdown)
        self.max_drawdown.set(guard.drawdown.max_drawdown)
        self.state.set(int(guard.state.state))

    def denied(self, reason: str) -> None:
        self.denied_orders.labels(reason=reason).inc()

    def guard_liquidation(self, cause: str) -> None:
        self.liquidations.labels(cause=cause).inc()

    def exchange_liquidation(self) -> None:
        self.liquidations.labels(cause="exchange").inc()
