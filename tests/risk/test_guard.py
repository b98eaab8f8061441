"""The guard: VaR liquidation on the right bar, HALTED/REDUCING behaviour, human resume, the
brake through the control channel, and identical decisions in vectorised and event backtests."""

import math
import time
from decimal import Decimal

import numpy as np
import pytest
from prometheus_client import generate_latest
from scipy.stats import norm

from methtrader.data import gbm_bars
from methtrader.engine.backtest import BacktestRunner
from methtrader.exchange.sim.matching import SimConfig
from methtrader.model import BarSeries, Order, OrderType, Side
from methtrader.model.instrument import generic_perpetual
from methtrader.risk.control import FileControl
from methtrader.risk.drawdown import DrawdownTracker
from methtrader.risk.exposure import RiskModel, ewma_path, ewma_step, log_returns
from methtrader.risk.guard import GuardConfig, RiskGuard
from methtrader.risk.metrics import RiskMetrics
from methtrader.risk.state import TradingState
from methtrader.strategies import Hold, SmaCross, Strategy

SYM = "SYNTHUSDT"
INSTRUMENT = generic_perpetual(SYM)


def calm_then_storm(n: int = 400, storm_at: int = 250, seed: int = 7) -> BarSeries:
    """Daily bars: 1% volatility, then 8% from `storm_at` on."""
    rng = np.random.default_rng(seed)
    vol = np.where(np.arange(n) < storm_at, 0.01, 0.08)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol)))
    close = np.round(close, 2)
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + 0.01
    low = np.minimum(open_, close) - 0.01
    ts = 1_600_041_600_000 + np.arange(n, dtype=np.int64) * 86_400_000 - 1_600_041_600_000 % 86_400_000
    return BarSeries(SYM, ts, open_, high, low, close, np.full(n, 1e6))


def run(
    strategy: Strategy, series: BarSeries, guard: RiskGuard, vectorised: bool | None = None, lev: int = 1
):
    runner = BacktestRunner(
        strategy,
        [(series, INSTRUMENT)],
        Decimal(10_000),
        SimConfig(leverage=Decimal(lev)),
        risk=guard,
        vectorised=vectorised,
    )
    return runner.run()


def independent_var_fraction(
    series: BarSeries, qty: np.ndarray, equity: np.ndarray, min_bars: int = 20
) -> np.ndarray:
    """VaR(99%, 1 day)/equity from a plain Python EWMA loop, written here from the definition."""
    r = [0.0] + [math.log(series.close[i] / series.close[i - 1]) for i in range(1, len(series))]
    var = [float("nan")] * len(r)
    v = sum(x * x for x in r[1 : min_bars + 1]) / min_bars
    var[min_bars] = v
    for t in range(min_bars + 1, len(r)):
        v = 0.06 * r[t] * r[t] + 0.94 * v
        var[t] = v
    sigma = np.sqrt(np.array(var))
    return norm.ppf(0.99) * sigma * np.abs(qty * series.close) / equity


def test_var_breach_liquidates_everything_on_that_bar_and_halts():
    series = calm_then_storm()
    guard = RiskGuard(GuardConfig())
    result = run(Hold(notional=9_000), series, guard)
    qty = result.positions[SYM]
    expected = independent_var_fraction(series, qty, result.equity)
    first_breach = int(np.flatnonzero(expected > 0.05)[0])
    (event,) = [e for e in guard.events if e.kind == "var_liquidation"]
    assert event.ts == series.ts[first_breach]
    assert event.var / event.equity == pytest.approx(expected[first_breach], rel=1e-9)
    assert guard.state.state is TradingState.HALTED
    # the reduce-only market order fills at the next open; flat from then on, for good
    assert qty[first_breach] != 0 and np.all(qty[first_breach + 1 :] == 0)
    (liquidation,) = [f for f in result.fills if f.trade_id in guard.liquidation_ids]
    assert liquidation.ts == series.ts[first_breach + 1] and liquidation.position_after == 0
    assert guard.liquidations == 1


def test_halted_guard_denies_new_orders_and_records_them():
    series = calm_then_storm()
    guard = RiskGuard(GuardConfig())
    result = run(SmaCross(fast=3, slow=8, qty=50), series, guard, lev=3)
    assert guard.state.state is TradingState.HALTED
    fire_ts = next(e.ts for e in guard.events if e.kind == "var_liquidation")
    after = [o for o in result.orders if o.created_ts > fire_ts and o.trade_id not in guard.liquidation_ids]
    assert after and all(o.status == "Rejected" and o.reject_reason == "risk:halted" for o in after)
    assert guard.denied_by_reason["halted"] == len(guard.denied) == len(after)
    assert all(f.ts <= fire_ts + 86_400_000 for f in result.fills)


@pytest.mark.parametrize(
    "config",
    [
        GuardConfig(),
        GuardConfig(drawdown_reduce=0.03, drawdown_halt=0.08),
        GuardConfig(daily_loss_halt=0.02, var_limit=None),
    ],
    ids=["var", "drawdown", "daily-loss"],
)
def test_vectorised_and_event_backtests_make_the_same_guard_decisions(config):
    series = calm_then_storm(600, storm_at=400, seed=3)
    runs = []
    for vectorised in (True, False):
        guard = RiskGuard(config)
        result = run(SmaCross(fast=4, slow=12, qty=40), series, guard, vectorised=vectorised, lev=2)
        runs.append((result, guard))
    (fast, g1), (slow, g2) = runs
    assert fast.meta["vectorised"] and not slow.meta["vectorised"]
    assert [(f.trade_id, f.qty, f.price, f.ts) for f in fast.fills] == [
        (f.trade_id, f.qty, f.price, f.ts) for f in slow.fills
    ]
    assert g1.events == g2.events and g1.events
    assert g1.denied == g2.denied
    assert g1.state.history == g2.state.history
    assert g1.drawdown == g2.drawdown
    assert np.array_equal(fast.equity, slow.equity)


def test_drawdown_reduce_allows_only_reducing_orders():
    series = calm_then_storm(500, storm_at=300)
    guard = RiskGuard(GuardConfig(var_limit=None, drawdown_reduce=0.02))
    result = run(SmaCross(fast=3, slow=10, qty=30), series, guard)
    assert guard.state.state is TradingState.REDUCING
    reduce_ts = guard.state.history[0].ts
    later = [o for o in result.orders if o.created_ts > reduce_ts]
    assert later
    for order in later:
        if order.reject_reason == "risk:reducing_only":
            continue
        assert order.status != "Rejected"  # what passed could only bring the position down
    assert any(o.reject_reason == "risk:reducing_only" for o in later)


def test_only_a_recorded_human_resume_returns_to_active():
    series = calm_then_storm()
    guard = RiskGuard(GuardConfig())
    run(Hold(notional=9_000), series, guard)
    assert guard.state.state is TradingState.HALTED
    with pytest.raises(ValueError, match="reason"):
        guard.resume("", "alice")
    guard.resume("volatility reviewed", "alice", ts=1)
    assert guard.state.state is TradingState.ACTIVE
    last = guard.state.history[-1]
    assert (last.new, last.who, last.reason) == (TradingState.ACTIVE, "alice", "volatility reviewed")
    guard.unknown_state("database unreachable", ts=2)
    assert guard.state.state is TradingState.REDUCING


class BrakeAtBar(Strategy):
    """Holds a long and has an operator pull the brake through the control channel at bar N."""

    at: int = 100

    def on_start(self) -> None:
        self.bars = 0

    def on_bar(self, bar) -> None:
        self.bars += 1
        self.target_position(bar.symbol, 20)  # keeps trying to be long: the brake must win
        if self.bars == self.at:
            self.control.issue("brake", "operator test", who="alice@desk")


@pytest.mark.parametrize("vectorised", [False, None])
def test_brake_through_file_control_flattens_and_halts(tmp_path, vectorised):
    control = FileControl(tmp_path)
    guard = RiskGuard(GuardConfig(var_limit=None), control=control)
    strategy = BrakeAtBar()
    strategy.control = control
    series = calm_then_storm()
    result = run(strategy, series, guard, vectorised=vectorised)
    brake_bar = 100 - 1
    (event,) = [e for e in guard.events if e.kind == "brake"]
    assert event.ts == series.ts[brake_bar + 1] and "alice@desk" in event.detail
    qty = result.positions[SYM]
    assert qty[brake_bar] == 20 and np.all(qty[brake_bar + 2 :] == 0)
    assert guard.state.state is TradingState.HALTED
    assert guard.state.history[-1].who == "alice@desk"
    late = [o for o in result.orders if o.created_ts > event.ts and o.trade_id not in guard.liquidation_ids]
    assert late and all(o.reject_reason == "risk:halted" for o in late)
    control.issue("brake", "again", who="bob")  # idempotent: still flat and halted
    assert control.braked()


def test_limits_deny_with_reason_codes():
    from methtrader.risk.limits import Limits

    series = calm_then_storm(60)
    guard = RiskGuard(GuardConfig(var_limit=None, limits=Limits(max_order_notional=Decimal(1_000))))
    result = run(SmaCross(fast=2, slow=5, qty=50), series, guard)
    assert guard.denied_by_reason["max_order_notional"] > 0
    assert all(o.reject_reason in ("", "risk:max_order_notional") for o in result.orders)


def test_metrics_expose_guard_state_var_and_denials():
    metrics = RiskMetrics()
    guard = RiskGuard(GuardConfig(), metrics=metrics)
    run(SmaCross(fast=3, slow=8, qty=50), calm_then_storm(), guard, lev=3)
    text = generate_latest(metrics.registry).decode()
    assert "methtrader_guard_state 2.0" in text
    assert 'methtrader_orders_denied_total{reason="halted"}' in text
    assert 'methtrader_liquidations_total{cause="var_liquidation"} 1.0' in text
    assert "methtrader_var_usdt" in text and "methtrader_drawdown_ratio" in text


def test_drawdown_absorb_equals_sequential_updates():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        ts = np.cumsum(rng.integers(1, 8, n)) * 3_600_000 + 1_600_000_000_000
        equity = 1000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        split = int(rng.integers(0, n))
        one, two = DrawdownTracker(), DrawdownTracker()
        for t, e in zip(ts, equity, strict=True):
            one.update(int(t), float(e))
        for t, e in zip(ts[:split], equity[:split], strict=True):
            two.update(int(t), float(e))
        two.absorb(ts[split:], equity[split:])
        assert one == two


def test_incremental_ewma_matches_the_vectorised_path():
    returns = log_returns(gbm_bars(500, seed=2).close)
    path = ewma_path(returns * returns, 0.94, 20)
    v = path[20]
    for t in range(21, len(returns)):
        v = ewma_step(v, returns[t] * returns[t], 0.94)
        assert v == path[t]
    with pytest.raises(ValueError):
        RiskModel(confidence=1.2)


def test_guard_needs_an_engine():
    guard = RiskGuard()
    with pytest.raises(RuntimeError, match="not bound"):
        guard.check(Order("x", SYM, Side.BUY, Decimal(1), OrderType.MARKET))


class LiveFedGuard(RiskGuard):
    """A guard fed bar by bar through `observe`, as the paper and live runners feed it."""

    def prepare(self, timeline, closes, bar_ms):
        self._feed = closes
        self.start_live(list(closes), bar_ms)

    def on_step(self, ts, step=None):
        step = self.observe(ts, {s: float(c[step]) for s, c in self._feed.items()})
        super().on_step(ts)

    def scan(self, a, b):
        return a  # a live feed cannot look ahead: never let the runner skip a bar


def test_live_fed_guard_decides_like_the_prepared_one():
    series = calm_then_storm(600, storm_at=400, seed=3)
    config = GuardConfig(drawdown_reduce=0.03, drawdown_halt=0.08)
    prepared, live = RiskGuard(config), LiveFedGuard(config)
    results = [
        run(SmaCross(fast=4, slow=12, qty=40), series, g, vectorised=False, lev=2) for g in (prepared, live)
    ]
    assert [f.trade_id for f in results[0].fills] == [f.trade_id for f in results[1].fills]
    assert [(e.ts, e.kind) for e in prepared.events] == [(e.ts, e.kind) for e in live.events]
    assert prepared.events
    for e1, e2 in zip(prepared.events, live.events, strict=True):
        assert e1.var == pytest.approx(e2.var, rel=1e-12, nan_ok=True)
    assert np.allclose(
        np.asarray(live.cov[0, 0], dtype=float), prepared.cov[0, 0], rtol=1e-12, equal_nan=True
    )


class BrakeAtBarThenWait(BrakeAtBar):
    """Live, bars arrive seconds apart; a backtest is faster than pub/sub, so wait like one."""

    def on_bar(self, bar) -> None:
        super().on_bar(bar)
        if self.bars == self.at:
            deadline = time.monotonic() + 5
            while not self.watched.braked() and time.monotonic() < deadline:
                time.sleep(0.005)


def test_brake_through_redis_reaches_the_guard(redis_url):
    from methtrader.risk.control import RedisControl

    operator = RedisControl(redis_url, account="acct")
    watched = RedisControl(redis_url, account="acct")
    try:
        guard = RiskGuard(GuardConfig(var_limit=None), control=watched)
        strategy = BrakeAtBarThenWait()
        strategy.control, strategy.watched = operator, watched
        series = calm_then_storm()
        result = run(strategy, series, guard, vectorised=False)
        (event,) = [e for e in guard.events if e.kind == "brake"]
        assert "alice@desk" in event.detail and guard.state.state is TradingState.HALTED
        assert result.positions[SYM][-1] == 0
        late = [
            o for o in result.orders if o.created_ts > event.ts and o.trade_id not in guard.liquidation_ids
        ]
        assert late and all(o.reject_reason == "risk:halted" for o in late)
        assert watched.braked() and watched.healthy
    finally:
        operator.close()
        watched.close()


class BuyOnceThenClose(Strategy):
    """Long 50 at the first bar; from bar `close_at` on, tries to close every bar."""

    close_at: int = 10_000

    def on_start(self) -> None:
        self.bars = 0

    def on_bar(self, bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.buy(bar.symbol, 50)
        elif (
            self.bars >= self.close_at
            and self.position(bar.symbol) != 0
            and not self._ctx.open_orders(bar.symbol)
        ):
            self.close(bar.symbol)


def falling(n: int = 120, start_fall: int = 40) -> BarSeries:
    close = np.round(
        np.where(np.arange(n) < start_fall, 100.0, 100.0 * 0.99 ** (np.arange(n) - start_fall + 1)), 2
    )
    open_ = np.concatenate(([100.0], close[:-1]))
    ts = 1_600_041_600_000 - 1_600_041_600_000 % 86_400_000 + np.arange(n, dtype=np.int64) * 86_400_000
    return BarSeries(
        SYM,
        ts,
        open_,
        np.maximum(open_, close) + 0.01,
        np.minimum(open_, close) - 0.01,
        close,
        np.full(n, 1e6),
    )


def test_drawdown_halt_flattens_instead_of_trapping_the_position():
    guard = RiskGuard(GuardConfig(var_limit=None, drawdown_halt=0.05))
    result = run(BuyOnceThenClose(), falling(), guard)
    (event,) = [e for e in guard.events if e.kind == "drawdown_halt"]
    assert guard.state.state is TradingState.HALTED
    qty = result.positions[SYM]
    fire = int(np.searchsorted(result.ts, event.ts))
    assert qty[fire] == 50 and np.all(qty[fire + 1 :] == 0)
    assert result.equity[-1] > 9_000  # the halt stopped the slide: 50 × 100 would have lost ~3,500


class HaltedMidway(BuyOnceThenClose):
    """Long 50; at bar 5 the state is HALTED by hand (nothing flattens); later the strategy closes."""

    def on_bar(self, bar) -> None:
        super().on_bar(bar)
        if self.bars == 5:
            self.guard.state.tighten(TradingState.HALTED, "operator test", bar.ts)
            self.buy(bar.symbol, 5)  # adding is denied


def test_a_halted_guard_still_lets_the_strategy_close():
    guard = RiskGuard(GuardConfig(var_limit=None))
    strategy = HaltedMidway(close_at=60)
    strategy.guard = guard
    result = run(strategy, falling(), guard, vectorised=False)
    assert result.positions[SYM][59] == 50 and result.positions[SYM][-1] == 0
    closing = [o for o in result.orders if o.reduce_only]
    assert closing and all(o.status == "Filled" for o in closing)
    assert guard.denied_by_reason == {"halted": 1}  # the add, nothing else


def test_resume_after_a_drawdown_halt_measures_from_the_resume():
    guard = RiskGuard(GuardConfig(var_limit=None, drawdown_halt=0.05))
    run(BuyOnceThenClose(), falling(), guard)
    assert guard.state.state is TradingState.HALTED
    before = guard.drawdown.max_drawdown
    guard.resume("loss accepted", "alice", ts=1)
    assert guard.state.state is TradingState.ACTIVE
    assert guard.drawdown.drawdown == 0 and guard.drawdown.peak == guard.drawdown.last_equity
    assert guard.drawdown.max_drawdown == before  # history is kept
    guard.drawdown.update(2, guard.drawdown.last_equity)
    guard._apply_rules(2, guard.drawdown.last_equity, 0.0, False)
    assert guard.state.state is TradingState.ACTIVE


class ThreeSells(Strategy):
    """Long 10, then three separate sells of 8 on one bar."""

    def on_start(self) -> None:
        self.bars = 0

    def on_bar(self, bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.buy(bar.symbol, 10)
        elif self.bars == 4:
            self.guard.unknown_state("exchange state unclear", bar.ts)
        elif self.bars == 5:
            for _ in range(3):
                self.sell(bar.symbol, 8)


def test_reducing_counts_working_orders():
    guard = RiskGuard(GuardConfig(var_limit=None))
    strategy = ThreeSells()
    strategy.guard = guard
    result = run(strategy, falling(), guard, vectorised=False)
    assert guard.denied_by_reason == {
        "reducing_only": 2
    }  # the first sell reduces 10 → 2; the others would flip
    assert result.positions[SYM][-1] == 2  # never short


class EagerGuard(RiskGuard):
    """Tracks drawdown on every evaluated bar, as when drawdown rules are configured."""

    def prepare(self, timeline, closes, bar_ms):
        super().prepare(timeline, closes, bar_ms)
        self._deferred = None


@pytest.mark.parametrize("symbols", [1, 3], ids=["one-symbol", "three-symbols"])
def test_deferred_drawdown_equals_bar_by_bar_tracking(symbols):
    """Without drawdown rules a backtest settles drawdown when it is read (by metrics, throttled,
    or at the end); tracked on every evaluated bar instead it must agree to the last bit."""
    feeds = [
        (gbm_bars(3000, seed=11 + k, symbol=f"S{k}USDT"), generic_perpetual(f"S{k}USDT"))
        for k in range(symbols)
    ]
    trackers = []
    for guard in (
        RiskGuard(GuardConfig(var_limit=0.5)),
        RiskGuard(GuardConfig(var_limit=0.5), metrics=RiskMetrics(min_interval_s=0)),
        EagerGuard(GuardConfig(var_limit=0.5)),
    ):
        strategy = SmaCross(fast=5, slow=20, qty=1)
        BacktestRunner(strategy, feeds, Decimal(10_000), SimConfig(), risk=guard).run()
        trackers.append(guard.drawdown)
    deferred, read_every_bar, eager = trackers
    assert deferred.max_drawdown > 0
    assert deferred == eager == read_every_bar
