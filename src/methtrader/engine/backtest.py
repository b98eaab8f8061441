"""The backtest runner: the engine with a simulated clock and the in-process matching engine.

Bars of all symbols are merged on one timeline. A strategy whose decisions come from a
vectorisable `signal` is evaluated on whole arrays first; the runner then wakes the engine only
on bars where something can happen (a signal change, an order to fill, a target not yet met,
funding, a liquidation) and marks equity between them in numpy. Every decision still runs
through the same engine, venue and ledger code as live trading.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from methtrader.engine.blocks import BlockExtremes
from methtrader.engine.clock import SimClock
from methtrader.engine.engine import Engine
from methtrader.engine.ids import SequentialIds
from methtrader.engine.portfolio import HeldFloat, Portfolio
from methtrader.engine.result import BacktestResult
from methtrader.engine.risk_hook import RiskHook
from methtrader.exchange.sim.margin import clear_of_trigger
from methtrader.exchange.sim.matching import MatchingEngine, SimConfig, StepBar
from methtrader.model import Bar, BarSeries, Instrument
from methtrader.strategies.base import Strategy
from methtrader.strategies.indicators import Frame, vector_columns

Progress = Callable[[int, int], None]
PROGRESS_EVERY = 50_000
log = logging.getLogger(__name__)


@dataclass
class _Feed:
    """One symbol's bars aligned to the merged timeline."""

    series: BarSeries
    instrument: Instrument
    bar_index: np.ndarray  # per timeline step: index into series, -1 when the symbol has no bar
    close: np.ndarray  # per timeline step: last close so far (NaN before the first bar)
    low: np.ndarray  # the bar's low, or the last close when the symbol has no bar at that step
    high: np.ndarray
    funding: np.ndarray  # funding intervals settled at this bar's open
    columns: dict[str, np.ndarray]  # indicators and bar columns over the series (not the timeline)
    block_low: BlockExtremes  # bounds on the lows / highs of any stretch of steps
    block_high: BlockExtremes


def _align(series: BarSeries, instrument: Instrument, timeline: np.ndarray, funding_ms: int) -> _Feed:
    n = len(series)
    if n and np.array_equal(series.ts, timeline):
        bar_index = np.arange(n)
        close, low, high = series.close, series.low, series.high
    else:
        pos = np.searchsorted(series.ts, timeline)
        has = (pos < n) & (series.ts[np.minimum(pos, n - 1)] == timeline)
        bar_index = np.where(has, pos, -1)
        last = np.searchsorted(series.ts, timeline, "right") - 1
        close = np.where(last >= 0, series.close[np.maximum(last, 0)], np.nan)
        low = np.where(has, series.low[np.minimum(pos, n - 1)], close)
        high = np.where(has, series.high[np.minimum(pos, n - 1)], close)
    periods = series.ts // funding_ms
    own_funding = np.empty(n, dtype=np.int64)
    if n:
        own_funding[0] = 1 if series.ts[0] % funding_ms == 0 else 0
        own_funding[1:] = np.diff(periods)
    return _Feed(
        series,
        instrument,
        bar_index,
        close,
        low,
        high,
        own_funding,
        {},
        BlockExtremes(low, lowest=True),
        BlockExtremes(high, lowest=False),
    )


def snap_to_tick(x: np.ndarray, tick: Decimal) -> np.ndarray:
    """Each price as the float nearest to an exact multiple of `tick` (the nearest multiple).

    The venue reads a bar price back as the Decimal of its shortest repr and rounds against the
    trader (up for buys), so the float must be the one whose repr *is* the tick multiple:
    `k * float(tick)` is not (2979910 × 0.01 is 29799.100000000002, a fill at 29799.11). With
    the tick as m × 10^-d, k·m and 10^d are exact integers in a float (k·m below 2^53, d up to
    22), and IEEE division of the two is correctly rounded: the nearest float to k·m / 10^d,
    whose repr is that decimal (for prices of up to 15 significant digits).
    """
    sign, digits, exponent = tick.normalize().as_tuple()
    if sign or not isinstance(exponent, int) or not tick:
        raise ValueError(f"tick size must be a positive finite number, got {tick}")
    m = int("".join(map(str, digits)))
    k = np.round(x / float(tick))
    if exponent >= 0:
        return k * float(m * 10**exponent)
    return (k * float(m)) / float(10**-exponent)


def _round_to_ticks(series: BarSeries, tick: Decimal) -> BarSeries:
    """Snap bar prices to the instrument's tick, as an exchange would have printed them."""
    o, h, low, c = (snap_to_tick(x, tick) for x in (series.open, series.high, series.low, series.close))
    return BarSeries(
        series.symbol,
        series.ts,
        o,
        np.maximum(h, np.maximum(o, c)),
        np.minimum(low, np.minimum(o, c)),
        c,
        series.volume,
    )


class BacktestRunner:
    """Drive one strategy over historical bars; `run()` returns a BacktestResult."""

    def __init__(
        self,
        strategy: Strategy,
        data: Sequence[tuple[BarSeries, Instrument]],
        cash: Decimal = Decimal(10_000),
        config: SimConfig | None = None,
        risk: RiskHook | None = None,
        vectorised: bool | None = None,
        progress: Progress | None = None,
    ) -> None:
        if not data:
            raise ValueError("a backtest needs at least one bar series")
        symbols = [s.symbol for s, _ in data]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols in backtest data: {symbols}")
        self.config = config or SimConfig()
        self.strategy = strategy
        self.cash = cash
        self.progress = progress
        self.vectorised = strategy.is_vectorisable() if vectorised is None else vectorised
        if self.vectorised and not strategy.is_vectorisable():
            raise ValueError(f"{strategy.label} has no vectorisable signal")
        series_list = [_round_to_ticks(s, inst.tick_size) for s, inst in data]
        if len(series_list) == 1:
            self.timeline = series_list[0].ts
        else:
            self.timeline = np.unique(np.concatenate([s.ts for s in series_list]))
        self.feeds = {
            s.symbol: _align(s, inst, self.timeline, self.config.funding_interval_ms)
            for s, (_, inst) in zip(series_list, data, strict=True)
        }
        self.instruments = {sym: f.instrument for sym, f in self.feeds.items()}
        self.clock = SimClock(int(self.timeline[0]) if len(self.timeline) else 0)
        self.venue = MatchingEngine(self.instruments.values(), cash, self.config)
        self.portfolio = Portfolio(cash, self.venue.leverage)
        self.engine = Engine(
            strategy,
            self.venue,
            self.instruments,
            self.clock,
            self.portfolio,
            SequentialIds(),
            risk,
        )
        self.bar_interval_ms = min(f.series.median_interval_ms for f in self.feeds.values())

    # ------------------------------------------------------------------ run
    def run(self) -> BacktestResult:
        n = len(self.timeline)
        indicators = self.strategy.indicators()
        for feed in self.feeds.values():
            feed.columns = vector_columns(indicators, feed.series, float(feed.instrument.tick_size))
        targets = self._vector_targets() if self.vectorised else None
        changes = self._target_changes(targets) if targets is not None else None
        wakes = self._wake_steps(changes) if changes is not None else None
        self.strategy.on_start()
        funding_steps = self._funding_steps()
        self._states: list[tuple[int, tuple[float, HeldFloat]]] = [(0, self.portfolio.snapshot())]
        self._satisfied = True
        risk = self.engine.risk
        risk.prepare(self.timeline, {s: f.close for s, f in self.feeds.items()}, self.bar_interval_ms)
        wakes = wakes.tolist() if wakes is not None else None
        i, w, reported = 0, 0, 0
        while i < n:
            self._step(i, targets, changes)
            nxt = i + 1
            if wakes is not None and self._satisfied and not self.venue.has_open_orders() and not risk.busy():
                while w < len(wakes) and wakes[w] <= i:
                    w += 1
                nxt = self._next_event(i, wakes[w] if w < len(wakes) else n, funding_steps)
            i = nxt
            if self.progress is not None and i - reported >= PROGRESS_EVERY:
                reported = i
                self.progress(i, n)
        self.strategy.on_stop()
        if self.progress is not None:
            self.progress(n, n)
        self.equity, self.exposure, self.positions = self._mark_all()
        result = self._result()
        counts = {"bars": n, "fills": len(result.fills), "orders": len(result.orders)}
        log.info(
            "backtest finished",
            extra={"strategy": self.strategy.name or type(self.strategy).__name__, **counts},
        )
        return result

    def _vector_targets(self) -> dict[str, np.ndarray]:
        """Signals over whole series, forward-filled into held targets (NaN until the first)."""
        targets = {}
        for symbol, feed in self.feeds.items():
            raw = np.broadcast_to(
                np.asarray(self.strategy.signal(Frame(feed.columns, None)), dtype=float), len(feed.series)
            )
            valid = ~np.isnan(raw)
            last = np.where(valid, np.arange(len(raw)), -1)
            np.maximum.accumulate(last, out=last)
            targets[symbol] = np.where(last >= 0, raw[np.maximum(last, 0)], np.nan)
        return targets

    def _target_changes(self, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per symbol and bar: does the held target differ from the previous bar's?"""
        changes = {}
        for symbol, held in targets.items():
            prev = np.concatenate(([np.nan], held[:-1]))
            changes[symbol] = (held != prev) & ~np.isnan(held)
        return changes

    def _wake_steps(self, changes: dict[str, np.ndarray]) -> np.ndarray:
        """Timeline steps where some symbol's held target changes (the first target included)."""
        steps = [np.flatnonzero(self.feeds[s].bar_index >= 0)[np.flatnonzero(c)] for s, c in changes.items()]
        return np.unique(np.concatenate(steps)) if steps else np.empty(0, dtype=np.int64)

    def _funding_steps(self) -> np.ndarray:
        if not self.config.funding_rate:
            return np.empty(0, dtype=np.int64)
        marks = np.zeros(len(self.timeline), dtype=bool)
        for feed in self.feeds.values():
            has = feed.bar_index >= 0
            marks[has] |= feed.funding[feed.bar_index[has]] > 0
        return np.flatnonzero(marks)

    def _next_event(self, i: int, nxt: int, funding_steps: np.ndarray) -> int:
        """Pull the next wake forward to a funding settlement or a liquidation, when positions
        are open, or to where the risk hook would act; otherwise nothing happens before `nxt`.

        The risk hook is also asked about `nxt` itself when that bar is a plain signal bar (no
        fill, funding or liquidation can come before the hook's check there): it then has
        evaluated that bar already and skips it in `on_step`."""
        symbols, _ = self.venue.held()
        plain = nxt < len(self.timeline)
        if symbols and len(funding_steps):
            k = int(np.searchsorted(funding_steps, i, "right"))
            if k < len(funding_steps) and funding_steps[k] <= nxt:
                plain = False
                nxt = int(funding_steps[k])
        end = nxt + 1 if plain else nxt
        if symbols and end > i + 1 and not self._cannot_liquidate(symbols, i + 1, end):
            lows = {s: self.feeds[s].low[i + 1 : end] for s in symbols}
            highs = {s: self.feeds[s].high[i + 1 : end] for s in symbols}
            hit = self.venue.scan_liquidation(lows, highs)
            if hit is not None:
                nxt = end = i + 1 + hit
        if end > i + 1:
            risk = self.engine.risk
            hit = risk.scan(i + 1, end)
            if hit is not None:
                nxt = min(nxt, hit)
                end = hit
            risk.absorb(i + 1, end)
        return nxt

    def _cannot_liquidate(self, symbols: list[str], a: int, b: int) -> bool:
        """Cheap exclusion for one position: the segment's extreme price stays clear of the
        liquidation trigger by a margin far above float error; the exact scan decides otherwise."""
        trigger = self.venue.single_trigger
        if trigger is None:
            return False
        qty = self.venue.held()[1][0][0]
        feed = self.feeds[symbols[0]]
        # first against the extremes of the blocks covering [a, b): pure Python, usually enough
        coarse = (feed.block_low if qty > 0 else feed.block_high).bound(a, b)
        if clear_of_trigger(qty, trigger, coarse):
            return True
        extreme = feed.low[a:b].min() if qty > 0 else feed.high[a:b].max()
        return clear_of_trigger(qty, trigger, float(extreme))

    def _step(
        self, i: int, targets: dict[str, np.ndarray] | None, changes: dict[str, np.ndarray] | None
    ) -> None:
        ts = self.timeline.item(i)
        self.clock.advance_to(ts)
        present = []
        for feed in self.feeds.values():
            k = feed.bar_index.item(i)
            if k >= 0:
                s = feed.series
                bar = StepBar(
                    feed.instrument.symbol,
                    s.open.item(k),
                    s.high.item(k),
                    s.low.item(k),
                    s.close.item(k),
                    s.volume.item(k),
                    feed.funding.item(k),
                )
                present.append((bar, feed, k))
        n_funding = len(self.venue.funding)
        fills = self.venue.process_step(ts, [bar for bar, _, _ in present])
        if len(self.venue.funding) > n_funding:
            for payment in self.venue.funding[n_funding:]:
                self.engine.on_funding(payment.amount)
        if fills:
            self.engine.on_fills(fills)
        self.engine.risk.on_step(ts, i)
        state = self.portfolio.snapshot()
        if state is not self._states[-1][1]:
            self._states.append((i, state))
        touched = bool(fills)
        unsatisfied: bool | None = None  # computed at most once per unchanged state
        for bar, feed, k in present:
            symbol = bar.symbol
            if targets is not None and changes is not None:
                # holding an unchanged, reached target is a no-op: skip it unless fills or an
                # unmet target could make it matter
                act = changes[symbol].item(k)
                if not act and (fills or not self._satisfied):
                    if unsatisfied is None:
                        unsatisfied = self.strategy.unsatisfied()
                    act = unsatisfied
                if act:
                    self.strategy.hold_target(symbol, targets[symbol].item(k))
                    touched, unsatisfied = True, None
            else:
                self.engine.frames[symbol] = Frame(feed.columns, k)
                self.strategy.on_bar(Bar(symbol, ts, bar.open, bar.high, bar.low, bar.close, bar.volume))
        if targets is not None and touched:
            self._satisfied = not (self.strategy.unsatisfied() if unsatisfied is None else unsatisfied)

    def _mark_all(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Equity and gross exposure at every close, from the portfolio states recorded at the
        steps where they changed: piecewise-constant positions marked in one numpy pass."""
        n = len(self.timeline)
        starts = np.array([s[0] for s in self._states], dtype=np.int64)
        segment = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
        equity = np.array([state[0] for _, state in self._states])[segment]
        exposure = np.zeros(n)
        positions = {}
        for symbol in sorted(self.feeds):
            qty = np.array([_held_value(state[1], symbol, 1) for _, state in self._states])[segment]
            cost = np.array([_held_value(state[1], symbol, 2) for _, state in self._states])[segment]
            positions[symbol] = qty
            held = qty != 0
            close = self.feeds[symbol].close
            equity = equity + np.where(held, qty * close - cost, 0.0)
            exposure = exposure + np.where(held, np.abs(qty) * close, 0.0)
        return equity, exposure, positions

    def _result(self) -> BacktestResult:
        account = self.portfolio.account
        interval = self.bar_interval_ms
        return BacktestResult(
            strategy=self.strategy.label,
            params=self.strategy.params(),
            symbols=list(self.feeds),
            ts=self.timeline,
            equity=self.equity,
            gross_exposure=self.exposure,
            fills=list(self.venue.fills),
            orders=list(self.engine.orders),
            initial_cash=self.cash,
            wallet_balance=account.wallet_balance,
            fees_paid=account.fees_paid,
            funding_paid=account.funding_paid,
            bar_interval_ms=interval,
            liquidations=self.venue.liquidations,
            positions=self.positions,
            meta={"vectorised": self.vectorised},
        )


def _held_value(held: HeldFloat, symbol: str, field: int) -> float:
    for entry in held:
        if entry[0] == symbol:
            return entry[field]  # type: ignore[return-value]
    return 0.0


def run_backtest(
    strategy: Strategy,
    data: Sequence[tuple[BarSeries, Instrument]],
    cash: Decimal = Decimal(10_000),
    config: SimConfig | None = None,
    **kwargs: object,
) -> BacktestResult:
    """Convenience wrapper: build a BacktestRunner and run it."""
    return BacktestRunner(strategy, data, cash, config, **kwargs).run()  # type: ignore[arg-type]


__all__ = ["BacktestRunner", "run_backtest"]
