"""Every Prometheus metric of a trading process, in one registry served on `/metrics`. Names follow
Prometheus conventions with a `methtrader_` prefix; label values are fixed, low-cardinality codes
(stream, status, reason, symbol, endpoint) — never the id of a user, order or trade."""

import math
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from methtrader.model import Bar, Fill, Order
from methtrader.ops.build import build_info
from methtrader.risk.metrics import RiskMetrics

if TYPE_CHECKING:
    from methtrader.engine.live import LiveRunner

DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
STREAMS = ("public", "private")

disable_created_metrics()  # `*_created` series double the exposition and no rule or panel uses them


class Metrics:
    """The process's metrics; also the live runner's observer (`on_bar`, `on_order`, `on_fills`,
    `on_message`, `on_status`), so the engine reports to it without importing it."""

    def __init__(
        self, registry: CollectorRegistry | None = None, starting_equity: float | None = None
    ) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = build_info()
        Info("methtrader_build", "Version and git commit of the running code.", registry=r).info(
            {"version": build.version, "commit": build.commit, "dirty": str(build.dirty).lower()}
        )
        self.risk = RiskMetrics(r)
        self.starting_equity = starting_equity
        self.bars = Counter("methtrader_bars_processed", "Closed bars handled by the strategy.", registry=r)
        self.last_bar = Gauge(
            "methtrader_last_bar_timestamp_seconds",
            "Unix time when the last closed bar was handled.",
            registry=r,
        )
        self.decision_latency = Histogram(
            "methtrader_decision_latency_seconds",
            "From a bar's stream message to the strategy's decision (orders queued).",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.orders = Counter("methtrader_orders", "Orders by what happened to them.", ["status"], registry=r)
        self.fills = Counter("methtrader_fills", "Executions booked.", registry=r)
        self.position_notional = Gauge(
            "methtrader_position_notional_usdt",
            "Signed position value at the last price.",
            ["symbol"],
            registry=r,
        )
        self.pnl = Gauge("methtrader_pnl_usdt", "Equity minus the session's starting equity.", registry=r)
        stream = ["stream"]
        self.messages = Counter(
            "methtrader_stream_messages", "WebSocket data messages received.", stream, registry=r
        )
        self.message_lag = Histogram(
            "methtrader_stream_message_lag_seconds",
            "From the exchange's message timestamp to its receipt.",
            stream,
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.last_message = Gauge(
            "methtrader_stream_last_message_timestamp_seconds",
            "Unix time of the last frame (data, ack or pong) received on a stream.",
            stream,
            registry=r,
        )
        self.connected = Gauge(
            "methtrader_stream_connected", "1 while the stream is subscribed, else 0.", stream, registry=r
        )
        self.reconnects = Counter(
            "methtrader_stream_reconnects", "Stream reconnections after a loss.", stream, registry=r
        )
        self.db_up = Gauge(
            "methtrader_db_up", "1 when the ledger database answers, 0 when not; NaN without one.", registry=r
        )
        self.db_write_latency = Histogram(
            "methtrader_db_write_latency_seconds", "Ledger write round trip.", buckets=DB_BUCKETS, registry=r
        )
        self.journal_backlog = Gauge(
            "methtrader_journal_backlog_events",
            "Events in the local journal not yet in the database.",
            registry=r,
        )
        self.db_up.set(math.nan)
        for name in STREAMS:  # every series exists from the start: alerts see 0, not absence
            self.messages.labels(name)
            self.reconnects.labels(name)
            self.connected.labels(name).set(0)
        for status in ("submitted", "filled", "cancelled", "rejected"):
            self.orders.labels(status)
        self._reconnects_seen: dict[str, int] = {}

    # ------------------------------------------------------------------ LiveObserver
    def on_message(self, stream: str, exchange_ts_ms: int | None) -> None:
        self.messages.labels(stream).inc()
        if exchange_ts_ms:
            self.message_lag.labels(stream).observe(max(0.0, time.time() - exchange_ts_ms / 1000))

    def on_bar(self, bar: Bar, received_ns: int) -> None:
        """After the strategy decided on `bar`; `received_ns` is perf_counter_ns at the message
        (0 for a bar fetched over REST, which has no latency to speak of)."""
        self.bars.inc()
        self.last_bar.set(time.time())
        if received_ns:
            self.decision_latency.observe((time.perf_counter_ns() - received_ns) / 1e9)

    def on_order(self, order: Order, event: str) -> None:
        """`event`: submitted, or the final status (filled, cancelled, rejected)."""
        self.orders.labels(event).inc()

    def on_fills(self, fills: list[Fill]) -> None:
        self.fills.inc(len(fills))

    def on_status(self, runner: "LiveRunner") -> None:
        """Each refresh of the live status: positions, PnL and the streams' state."""
        status = runner.status
        if status.last_price == status.last_price:
            self.position_notional.labels(runner.symbol).set(float(status.position) * status.last_price)
        if self.starting_equity is not None and status.equity == status.equity:
            self.pnl.set(status.equity - self.starting_equity)
        now = time.time()
        for stream in runner.feed.streams:
            self.connected.labels(stream.name).set(1 if stream.state == "connected" else 0)
            age = runner.feed.frame_age_s(stream.name)  # any frame counts: data, ack or pong
            if age is not None:
                self.last_message.labels(stream.name).set(now - age)
            seen = self._reconnects_seen.get(stream.name, 0)
            if stream.reconnects > seen:
                self.reconnects.labels(stream.name).inc(stream.reconnects - seen)
                self._reconnects_seen[stream.name] = stream.reconnects
