"""Stream-driven paper sessions against the simulator over loopback: bars and fills arrive on
ccxt.pro WebSockets, orders leave over REST, and the engine's ledger ends equal to the exchange's —
also when the private stream is cut, or goes silent, while executions keep happening, and when
the public stream misses bars."""

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from methtrader.data import resolve_bars
from methtrader.engine.live import LiveRunner, LiveStatus
from methtrader.exchange.bybit.adapter import BybitAdapter, VenueSettings, make_client
from methtrader.exchange.bybit.streams import (
    StreamFeed,
    StreamSettings,
    StreamState,
    backoff_delay,
    parse_execution,
)
from methtrader.exchange.sim.runner import BackgroundServer
from methtrader.exchange.sim.streams import StreamChaos, stream_chaos
from methtrader.exchange.sim.venue import SimAccount, SimExchange
from methtrader.model import Bar
from methtrader.strategies.base import Strategy

SYMBOL = "BTCUSDT"
BAR_SECONDS = 0.15  # one hourly bar every 150 ms: order creates stay under Bybit's 10/s
FAST = StreamSettings(
    ping_interval_s=0.5,
    dead_after_s=2.0,
    backoff_initial_s=0.1,
    backoff_max_s=0.5,
    connect_timeout_s=5.0,
    reconcile_interval_s=30.0,
)


class Flip(Strategy):
    """Long on odd bars, short on even ones: one market order every bar."""

    name = "flip"
    qty: Decimal = Decimal("0.01")

    def on_start(self) -> None:
        self.seen: list[int] = []

    def on_bar(self, bar: Bar) -> None:
        self.seen.append(bar.ts)
        self.target_position(bar.symbol, self.qty if len(self.seen) % 2 else -self.qty)


@dataclass
class Sim:
    exchange: SimExchange
    server: BackgroundServer
    key: str
    secret: str
    chaos: StreamChaos

    @property
    def account(self) -> SimAccount:
        uid = self.exchange.keys.get(self.key).uid  # type: ignore[union-attr]
        return self.exchange.account(uid)

    def fills(self) -> int:
        with self.exchange.lock:
            return len(self.account.engine.fills)


@pytest.fixture
def sim(tmp_path) -> Iterator[Sim]:
    series, instrument = resolve_bars("btcusdt-1h-2019-2020")
    speed = series.median_interval_ms / 1000 / BAR_SECONDS
    exchange = SimExchange(series, instrument, state_dir=tmp_path, speed=speed, cash=Decimal(100_000))
    with BackgroundServer(exchange) as server:
        key, secret, _ = exchange.add_key()
        yield Sim(exchange, server, key, secret, stream_chaos(exchange))


async def until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> float:
    """Wait for `condition`; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def session(
    sim: Sim,
    script: Callable[[LiveRunner], object] | None = None,
    max_bars: int | None = None,
    settings: StreamSettings = FAST,
) -> tuple[LiveRunner, LiveStatus]:
    """One paper session; `script(runner)` (a coroutine) runs alongside and must stop it."""
    venue = VenueSettings(network="sim", sim_url=sim.server.url)

    async def main() -> tuple[LiveRunner, LiveStatus]:
        adapter = BybitAdapter(make_client(venue, sim.key, sim.secret), venue)
        runner = LiveRunner(
            Flip(),
            adapter,
            sim.exchange.instrument,
            Decimal(100_000),
            poll_seconds=0.05,
            stream_settings=settings,
            settle_seconds=3.0,
        )
        try:
            run = asyncio.create_task(runner.run(max_bars=max_bars, warmup=10))
            if script is not None:
                try:
                    await asyncio.wait_for(script(runner), 30)  # type: ignore[arg-type]
                finally:
                    runner.stop()
            status = await asyncio.wait_for(run, 30)
            return runner, status
        finally:
            await adapter.close()

    return asyncio.run(main())


def assert_ledger_equals_exchange(runner: LiveRunner, sim: Sim) -> None:
    with sim.exchange.lock:
        engine = sim.account.engine
        fills = list(engine.fills)
        position = engine.account.positions[SYMBOL].qty if SYMBOL in engine.account.positions else 0
    assert fills, "the session traded nothing"
    assert runner.portfolio.position(SYMBOL) == position
    assert runner._seen_exec == {f.exec_id for f in fills}  # every execution, each once
    assert runner.status.fills == len(fills)
    assert runner.portfolio.account.fees_paid == sum(f.fee for f in fills)
    assert not runner.venue.open_orders[SYMBOL]


def test_stream_session_ledger_equals_the_exchange(sim: Sim) -> None:
    runner, status = session(sim, max_bars=25)
    assert status.bars == 25 and status.fills >= 24
    assert not status.errors, status.errors
    assert status.reconnects == 0 and status.reconciliations >= 2  # at start and at the end
    feed = runner.feed
    assert feed is not None
    assert feed.counters.ws_bars >= 24  # bars came from the stream
    assert feed.counters.ws_executions == status.fills and feed.counters.rest_executions == 0
    assert runner.strategy.seen == sorted(set(runner.strategy.seen))  # type: ignore[attr-defined]
    assert_ledger_equals_exchange(runner, sim)


def test_private_stream_cut_loses_no_fill_and_doubles_none(sim: Sim) -> None:
    async def script(runner: LiveRunner) -> None:
        feed = runner.feed
        await until(lambda: runner.status.fills >= 3, what="first fills")
        sim.chaos.refuse(private=True)  # reconnects fail for a while ...
        assert sim.chaos.drop_private() == 1  # ... after the live socket is dropped
        await until(lambda: feed.private.state is not StreamState.CONNECTED, 5, "the drop noticed")
        cut_at = sim.fills()
        await until(lambda: sim.fills() >= cut_at + 3, what="executions during the cut")
        assert feed.private.state is not StreamState.CONNECTED
        sim.chaos.refuse(private=True, on=False)
        await until(lambda: feed.reconnects >= 1 and feed.connected, what="the reconnect")
        bars = runner.status.bars
        await until(lambda: runner.status.bars >= bars + 4, what="trading after the reconnect")

    runner, status = session(sim, script)
    feed = runner.feed
    assert feed is not None
    assert status.reconnects >= 1 and feed.private.reconnects >= 1 and feed.public.reconnects == 0
    assert feed.counters.rest_executions >= 3  # the cut's executions came back through REST
    assert all(e.startswith("stream private") for e in status.errors), status.errors
    assert_ledger_equals_exchange(runner, sim)


def test_silent_private_socket_is_detected_by_the_heartbeat(sim: Sim) -> None:
    detected: list[float] = []

    async def script(runner: LiveRunner) -> None:
        feed = runner.feed
        await until(lambda: runner.status.fills >= 2, what="first fills")
        assert sim.chaos.mute(private=True) == 1  # half-open: no data, no pongs, no close
        down = await until(lambda: feed.private.state is not StreamState.CONNECTED, 10, "dead socket")
        detected.append(down)
        await until(lambda: feed.reconnects >= 1 and feed.connected, what="the reconnect")
        bars = runner.status.bars
        await until(lambda: runner.status.bars >= bars + 4, what="trading after the reconnect")

    runner, status = session(sim, script)
    assert detected[0] <= FAST.dead_after_s + 1.5  # dead_after plus one watchdog period, plus slack
    assert runner.feed.counters.dead_sockets == 1  # our watchdog, ahead of ccxt's pong check
    assert any("RequestTimeout" in e and "no frame" in e for e in status.errors), status.errors
    assert status.reconnects >= 1
    assert runner.feed is not None and runner.feed.counters.rest_executions >= 1
    assert all(e.startswith("stream private") for e in status.errors), status.errors
    assert_ledger_equals_exchange(runner, sim)


def test_public_stream_cut_misses_no_bar(sim: Sim) -> None:
    async def script(runner: LiveRunner) -> None:
        feed = runner.feed
        await until(lambda: runner.status.bars >= 3, what="first bars")
        rest_bars = feed.counters.rest_bars
        sim.chaos.refuse(private=False)
        assert sim.chaos.drop(private=False) == 1
        bar_ts = sim.exchange.bar_ts
        await until(lambda: sim.exchange.bar_ts >= bar_ts + 3 * 3_600_000, what="bars during the cut")
        sim.chaos.refuse(private=False, on=False)
        await until(lambda: feed.reconnects >= 1 and feed.connected, what="the reconnect")
        bars = runner.status.bars
        await until(lambda: runner.status.bars >= bars + 3, what="bars after the reconnect")
        assert feed.counters.rest_bars >= rest_bars + 2  # missed bars came from REST

    runner, status = session(sim, script)
    seen = runner.strategy.seen  # type: ignore[attr-defined]
    ts = [int(t) for t in sim.exchange.series.ts]
    first = ts.index(seen[0])
    assert seen == ts[first : first + len(seen)]  # every bar once, in order, none skipped
    assert status.reconnects >= 1
    assert_ledger_equals_exchange(runner, sim)


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    settings = StreamSettings(backoff_initial_s=0.5, backoff_max_s=30.0, backoff_jitter=0.5)
    delays = [[backoff_delay(a, settings, rng) for a in range(12)] for _ in range(50)]
    for attempt in range(12):
        base = min(30.0, 0.5 * 2**attempt)
        column = [d[attempt] for d in delays]
        assert all(base / 2 <= d <= base for d in column)
        assert len(set(column)) > 1  # jittered


def test_funding_rows_are_not_fills() -> None:
    row = {
        "execId": "e1",
        "orderId": "o1",
        "orderLinkId": "",
        "symbol": SYMBOL,
        "side": "Sell",
        "execQty": "0.5",
        "execPrice": "100",
        "execFee": "0.01",
        "isMaker": "true",
        "execTime": "7",
    }
    fill = parse_execution(row)
    assert fill is not None and fill.qty == Decimal("0.5") and fill.is_maker and fill.ts == 7
    assert parse_execution({**row, "execType": "Funding"}) is None


def test_bars_that_close_during_a_slow_warm_up_are_history_not_a_burst(sim: Sim, monkeypatch) -> None:
    """Issue 10.8: a warm-up slower than a few bars (a slow exchange, a large history) used to trade
    every bar that closed meanwhile, one after another: a burst of alternating orders. The strategy
    learns them as history and decides once, on the latest."""
    history = StreamFeed.history

    async def slow_history(self: StreamFeed, count: int) -> list[Bar]:
        bars = await history(self, count)
        await asyncio.sleep(8 * BAR_SECONDS)  # about eight bars close meanwhile
        return bars

    monkeypatch.setattr(StreamFeed, "history", slow_history)
    decided: list[float] = []
    on_bar = Flip.on_bar

    def timed_on_bar(self: Flip, bar: Bar) -> None:
        decided.append(time.monotonic())
        on_bar(self, bar)

    monkeypatch.setattr(Flip, "on_bar", timed_on_bar)

    async def script(runner: LiveRunner) -> None:
        await until(lambda: len(decided) >= 4, what="four decisions")

    _, status = session(sim, script)
    gaps = [b - a for a, b in itertools.pairwise(decided)]
    assert min(gaps) > BAR_SECONDS / 3, gaps  # one decision per bar as bars close, never a burst
    assert not status.errors, status.errors


def test_an_order_the_exchange_refuses_is_an_error_the_session_shows(sim: Sim, monkeypatch, caplog) -> None:
    """Issue 10.8: orders refused by the exchange (10006, margin...) were closed Rejected in silence;
    each is a warning line and an error row of the session (the view and the summary show them)."""
    monkeypatch.setattr(Flip, "qty", Decimal("5000"))  # far beyond the account's margin

    async def script(runner: LiveRunner) -> None:
        await until(lambda: bool(runner.status.errors), what="the refusal")

    runner, status = session(sim, script)
    refused = [e for e in status.errors if "rejected by the exchange" in e]
    assert refused, status.errors
    assert any(o.trade_id in refused[0] for o in runner.venue.orders.values())  # named by its trade id
    warnings = [str(getattr(r, "detail", "")) for r in caplog.records if r.levelname == "WARNING"]
    assert any("rejected by the exchange" in w for w in warnings), warnings
