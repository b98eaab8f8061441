"""The risk guard: every order passes it, and it acts on its own. After each bar's fills it
computes VaR, ES, equity and drawdown of the live positions; above the VaR limit it cancels all
orders, liquidates every position with reduce-only market orders and HALTS; drawdown and daily
loss tighten the trading state; the emergency brake does the same as a VaR breach. Only a
recorded human `resume` loosens it again.

In a backtest it also tells the runner, with a vectorised scan of the bars ahead, the first bar
where it would act — so the engine may skip quiet bars and the guard still sees every one.
"""

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from methtrader.engine.blocks import BlockExtremes
from methtrader.model import Fill, Order, OrderStatus, OrderType, Side
from methtrader.model.bar import DAY_MS
from methtrader.model.instrument import to_decimal
from methtrader.risk.control import ControlChannel, ControlCommand
from methtrader.risk.drawdown import DrawdownTracker
from methtrader.risk.exposure import RiskModel, equity, ewma_path, ewma_step, log_returns, var_es
from methtrader.risk.limits import Limits, OrderContext, OrderRateLimit, check_limits, reduces
from methtrader.risk.state import TradingState, TradingStateMachine

if TYPE_CHECKING:
    from methtrader.engine.engine import Engine
    from methtrader.risk.metrics import RiskMetrics

ZERO = Decimal(0)


@dataclass(frozen=True)
class GuardConfig:
    """Automatic rules; None switches one off. Fractions are of current equity (or its peak)."""

    model: RiskModel = field(default_factory=RiskModel)
    var_limit: float | None = 0.05
    drawdown_reduce: float | None = None
    drawdown_halt: float | None = None
    daily_loss_halt: float | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class GuardEvent:
    ts: int
    kind: str  # var_liquidation, brake, drawdown_reduce, drawdown_halt, daily_loss, resume, unknown_state
    detail: str
    var: float = float("nan")
    equity: float = float("nan")


@dataclass(frozen=True, slots=True)
class DeniedOrder:
    ts: int
    trade_id: str
    symbol: str
    reason: str


class RiskGuard:
    """The engine's risk hook. Bind it to an engine, `prepare` it with the timeline's closes."""

    def __init__(
        self,
        config: GuardConfig | None = None,
        control: ControlChannel | None = None,
        metrics: "RiskMetrics | None" = None,
    ) -> None:
        self.config = config or GuardConfig()
        self._z, self._es_factor = self.config.model.z, self.config.model.es_factor
        self.control = control
        self.metrics = metrics
        if metrics is not None:
            metrics.configure(self)
        self.state = TradingStateMachine()
        self._tracker = DrawdownTracker()
        # Backtests without drawdown rules need drawdown only when someone (metrics) reads it;
        # until then the evaluated stretches wait in a _Deferred and are settled in one pass.
        self._deferred: _Deferred | None = None
        self.rate = OrderRateLimit(self.config.limits.max_orders_per_minute)
        self.events: list[GuardEvent] = []
        self.on_event: Callable[[GuardEvent], None] | None = None  # alerts and logs of a live session
        self.on_command: Callable[[ControlCommand], None] | None = None  # the ledger's control record
        self.denied: list[DeniedOrder] = []
        self.denied_by_reason: Counter[str] = Counter()
        self.liquidations = 0
        self.liquidation_ids: set[str] = set()
        self.last_var = self.last_es = self.last_equity = float("nan")
        self._own: set[str] = set()
        self._flattening = False
        latest = control.latest() if control is not None else None
        # a braked account stays braked: a process started after the brake obeys it on its first bar
        self._seen_control = 0 if latest is None else latest.seq - (1 if latest.is_brake else 0)
        self._engine: Engine | None = None
        self._scanned: tuple | None = None
        self._bounds_cache: tuple | None = None
        self._coarse_cache: tuple | None = None
        self._live = False
        self._absorbed_until = 0
        self.unknowns: dict[str, str] = {}  # cause -> reason, each unclear state not yet resolved
        self._dd_rules = any(
            v is not None
            for v in (self.config.drawdown_reduce, self.config.drawdown_halt, self.config.daily_loss_halt)
        )
        self._sized_limits = any(
            v is not None
            for v in (
                self.config.limits.max_position_notional,
                self.config.limits.max_gross_exposure,
                self.config.limits.max_leverage,
                self.config.limits.max_order_notional,
            )
        )
        self._plain = not self._sized_limits and self.config.limits.max_orders_per_minute is None

    # ------------------------------------------------------------------ wiring
    def bind(self, engine: "Engine") -> None:
        self._engine = engine

    def prepare(self, timeline: np.ndarray, closes: dict[str, np.ndarray], bar_ms: int) -> None:
        """Market data on the engine's timeline (closes forward-filled, NaN before a symbol's
        first bar). Covariances at step i use returns up to and including step i only."""
        model = self.config.model
        self.timeline = timeline
        self.symbols = sorted(closes)
        self.index = {s: k for k, s in enumerate(self.symbols)}
        self.close = {s: closes[s] for s in self.symbols}
        self.scale = model.horizon_scale(bar_ms)
        returns = {s: log_returns(closes[s]) for s in self.symbols}
        first = {s: int(np.argmax(np.isfinite(closes[s]))) for s in self.symbols}
        self.cov: dict[tuple[int, int], np.ndarray] = {}
        for a, sa in enumerate(self.symbols):
            for b in range(a, len(self.symbols)):
                sb = self.symbols[b]
                start = max(first[sa], first[sb]) + model.min_bars
                self.cov[a, b] = ewma_path(returns[sa] * returns[sb], model.lam, start)
        self._variance = {s: self.cov[k, k] for s, k in self.index.items()}
        # |price| × σ per bar: bounds a single position's VaR over a stretch with one max()
        self._vol_price = {
            s: np.nan_to_num(np.abs(self.close[s]) * np.sqrt(self.cov[k, k]), nan=0.0)
            for s, k in self.index.items()
        }
        self._coarse = {
            s: (
                BlockExtremes(self.close[s], lowest=True),
                BlockExtremes(self.close[s], lowest=False),
                BlockExtremes(self._vol_price[s], lowest=False),
            )
            for s in self.symbols
        }
        # the same bounds over the whole timeline: one comparison clears most stretches
        self._global = {
            s: (min(low.blocks), max(high.blocks), max(vol.blocks))
            for s, (low, high, vol) in self._coarse.items()
        }
        self._deferred = _Deferred() if not self._dd_rules else None

    def start_live(self, symbols: list[str], bar_ms: int) -> None:
        """Paper and live trading: no history ahead; `observe` appends each bar as it closes."""
        model = self.config.model
        self.symbols = sorted(symbols)
        self.index = {s: k for k, s in enumerate(self.symbols)}
        self.scale = model.horizon_scale(bar_ms)
        self.timeline = _Series()
        self.close = {s: _Series() for s in self.symbols}
        self.cov = {(a, b): _Series() for a in range(len(self.symbols)) for b in range(a, len(self.symbols))}
        self._variance = {s: self.cov[k, k] for s, k in self.index.items()}
        self._products: dict[tuple[int, int], list[float]] = {pair: [] for pair in self.cov}
        self._first: dict[str, int | None] = {s: None for s in self.symbols}
        self._live = True

    def observe(self, ts: int, closes: dict[str, float]) -> int:
        """Append one bar's closes (a missing symbol keeps its last close); the same EWMA
        recursion as `prepare`, one step at a time. Returns the step index for `on_step`."""
        model = self.config.model
        step = len(self.timeline)
        self.timeline.append(ts)
        returns = {}
        for s in self.symbols:
            series = self.close[s]
            previous = series[-1] if series else math.nan
            close = closes.get(s, previous)
            series.append(close)
            if self._first[s] is None and math.isfinite(close):
                self._first[s] = step
            ratio = close / previous if step and previous > 0 else math.nan
            r = float(np.log(np.float64(ratio))) if math.isfinite(ratio) and ratio > 0 else 0.0
            returns[s] = r if math.isfinite(r) else 0.0
        for (a, b), path in self.cov.items():
            sa, sb = self.symbols[a], self.symbols[b]
            product = returns[sa] * returns[sb]
            products = self._products[a, b]
            products.append(product)
            first_a, first_b = self._first[sa], self._first[sb]
            start = None if first_a is None or first_b is None else max(first_a, first_b) + model.min_bars
            if start is None or step < start:
                path.append(math.nan)
            elif step == start:
                path.append(float(np.mean(np.asarray(products[1 : start + 1]))))
            else:
                path.append(ewma_step(path[-1], product, model.lam))
        return step

    @property
    def drawdown(self) -> DrawdownTracker:
        """Peak, drawdown and daily loss up to the last bar evaluated."""
        if self._deferred is not None and self._deferred.starts:
            pending, self._deferred = self._deferred, _Deferred()
            steps, eq = pending.equity(self.close)
            self._tracker.absorb(self.timeline[steps], eq)
        return self._tracker

    # ------------------------------------------------------------------ RiskHook
    def check(self, order: Order) -> str | None:
        """None lets the order through; otherwise the recorded reason it was denied."""
        if order.trade_id in self._own:
            return None
        engine = self._require_engine()
        state = self.state.state
        if state is TradingState.ACTIVE and self._plain and order.type is OrderType.MARKET:
            return None  # no limit applies to a market order while ACTIVE
        reason = None
        # working orders count: three sells of 8 against a long of 10 do not all "reduce"
        position = engine.position(order.symbol) + engine.pending_qty(order.symbol)
        closing = order.reduce_only or reduces(order, position)
        if state is TradingState.HALTED:
            reason = None if closing else "halted"  # a halt must never trap a position
        else:
            if state is TradingState.REDUCING and not closing:
                reason = "reducing_only"
            elif self._sized_limits or order.type is OrderType.LIMIT:
                reason = check_limits(order, self.config.limits, self._context(order.symbol, position))
            if reason is None and not self.rate.allow(engine.now()):
                reason = "max_order_rate"
        if reason is not None:
            self.denied.append(DeniedOrder(engine.now(), order.trade_id, order.symbol, reason))
            self.denied_by_reason[reason] += 1
            if self.metrics is not None:
                self.metrics.denied(reason)
        return reason

    def on_fill(self, fill: Fill) -> None:
        """Fills are evaluated with the bar they belong to, in `on_step` right after them."""
        if self.metrics is not None and fill.is_liquidation:
            self.metrics.exchange_liquidation()

    def on_step(self, ts: int, step: int | None = None) -> None:
        """Evaluate every rule after a bar's fills, at that bar's closes (`step`: the bar's index
        on the prepared timeline, when the caller knows it)."""
        if step is not None:
            if step < self._absorbed_until:
                return  # the backtest's scan already evaluated this bar (nothing changed since)
            i = step
        elif self._live:
            i = len(self.timeline) - 1
        else:
            i = int(np.searchsorted(self.timeline, ts))
        if self.control is not None:
            self._follow_control(ts)
        wallet, held = self._require_engine().portfolio.snapshot()
        if len(held) == 1:  # the common case, inlined with the same operation order as below
            symbol, qty, cost = held[0]
            close = self.close[symbol].item(i)
            eq = wallet + (qty * close - cost)
            weight = qty * close
            variance = weight * weight * self._variance[symbol].item(i)
            sigma = (math.sqrt(variance) if variance > 0 else 0.0 if variance <= 0 else math.nan) * self.scale
            var, es = self._z * sigma, self._es_factor * sigma
        else:
            symbols = [s for s, _, _ in held]
            qty_list = [q for _, q, _ in held]
            closes = [self.close[s].item(i) for s in symbols]
            eq = float(equity(wallet, qty_list, [c for _, _, c in held], closes))
            var, es = self._var_es(symbols, qty_list, closes, i)
            var, es = float(var), float(es)
        self.last_var, self.last_es, self.last_equity = var, es, eq
        if self._deferred is not None:
            self._deferred.point(i, wallet, eq)
        else:
            self._tracker.update(ts, eq)
        limit = self.config.var_limit
        if self._dd_rules or (
            held and limit is not None and not self._flattening and (eq <= 0 or var > limit * eq)
        ):
            self._apply_rules(ts, eq, var, bool(held))
        if self._flattening:
            self._keep_flattening(ts)
        if self.metrics is not None:
            self.metrics.observe(self)

    def snapshot(self) -> dict[str, object]:
        """The risk state a decision was taken under (lineage): state, VaR, ES, equity, limits."""

        def number(value: float) -> float | None:
            return round(value, 6) if math.isfinite(value) else None

        cfg = self.config
        return {
            "state": self.state.state.name,
            "reason": self.state.reason,
            "var": number(self.last_var),
            "es": number(self.last_es),
            "equity": number(self.last_equity),
            "var_limit": cfg.var_limit,
            "confidence": cfg.model.confidence,
            "horizon_ms": cfg.model.horizon_ms,
            "drawdown_reduce": cfg.drawdown_reduce,
            "drawdown_halt": cfg.drawdown_halt,
            "daily_loss_halt": cfg.daily_loss_halt,
        }

    def clear_unknown_state(self, reason: str, ts: int, *, cause: str = "") -> bool:
        """Back to ACTIVE after an unknown state was resolved (database back, journal replayed),
        only once every cause is resolved and if nothing else tightened the state since."""
        self.unknowns.pop(cause, None)
        if self.unknowns:  # another cause (the database, a stream) is still unclear
            return False
        machine = self.state
        if machine.state is not TradingState.REDUCING or not machine.reason.startswith("unknown state:"):
            return False
        if not machine.resume(f"resolved: {reason}", ts, "guard"):
            return False
        self._record(GuardEvent(ts, "unknown_state_cleared", reason))
        return True

    def poll(self, ts: int) -> None:
        """Between bars (paper and live): obey a brake or resume at once, keep flattening."""
        if self.control is not None:
            self._follow_control(ts)
        if self._flattening:
            self._keep_flattening(ts)
        if self.metrics is not None:
            self.metrics.observe(self)

    def busy(self) -> bool:
        """True while a liquidation is still working: the runner must not skip the next bar."""
        return self._flattening

    # ------------------------------------------------------------------ human actions
    def brake(self, reason: str, who: str, ts: int | None = None) -> None:
        """Emergency brake in this process: cancel everything, flatten, HALT."""
        now = self._require_engine().now() if ts is None else ts
        self._liquidate(now, "brake", f"{reason} (by {who})", who)

    def resume(self, reason: str, who: str, ts: int | None = None) -> None:
        now = self._require_engine().now() if ts is None else ts
        if self.state.resume(reason, now, who):
            self._flattening = False
            self.drawdown.rebase()  # the human accepted the loss: measure from here, or it re-halts at once
            self.unknowns.pop("position", None)  # a person checked the position the ledger could not explain
            self._record(GuardEvent(now, "resume", f"{reason} (by {who})"))

    def unknown_state(self, reason: str, ts: int | None = None, *, cause: str = "") -> None:
        """Exchange or database state is unclear: block new exposure, keep reducing allowed.
        `cause` names the source ("" the ledger, "stream:private"...); each is cleared on its own."""
        now = self._require_engine().now() if ts is None else ts
        self.unknowns[cause] = reason
        if self.state.tighten(TradingState.REDUCING, f"unknown state: {reason}", now):
            self._record(GuardEvent(now, "unknown_state", reason))

    # ------------------------------------------------------------------ backtest scan
    def scan(self, a: int, b: int) -> int | None:
        """First step in [a, b) where a rule would act if positions stay as they are now."""
        if self.control is not None and self._control_pending():
            return a
        wallet, held = self._require_engine().portfolio.snapshot()
        if not held:
            return None  # equity is constant when flat: no rule can newly fire
        if self._deferred is not None and len(held) == 1 and self._globally_clear(wallet, held[0]):
            return None
        if self._quick_clear(a, b, wallet, held):
            return None
        eq, var = self._segment(a, b, wallet, held)
        self._scanned = (a, held, eq, var)
        fire = np.zeros(b - a, dtype=bool)
        if held and self.config.var_limit is not None and not self._flattening:
            fire |= (eq <= 0) | (var > self.config.var_limit * eq)
        fire |= self._drawdown_fires(self.timeline[a:b], eq)
        hits = np.flatnonzero(fire)
        return a + int(hits[0]) if len(hits) else None

    def absorb(self, a: int, b: int) -> None:
        """Account for steps [a, b) the runner skipped (the scan found nothing there)."""
        self._absorbed_until = b
        wallet, held = self._require_engine().portfolio.snapshot()
        if self._deferred is not None:
            self._scanned = None
            self._deferred.stretch(a, b, wallet, held)
            return
        if b > a and self._quick_absorb(a, b, wallet, held):
            return
        cached = self._scanned
        if cached is not None and cached[0] == a and cached[1] is held and len(cached[2]) >= b - a:
            eq = cached[2][: b - a]
        else:
            eq, _ = self._segment(a, b, wallet, held)
        self._scanned = None
        self._tracker.absorb(self.timeline[a:b], eq)

    def _bounds(self, a: int, b: int, wallet: float, held: list) -> tuple[float, float]:
        """Best and worst equity over [a, b) for one position: equity is monotone in the price,
        and IEEE rounding keeps it so, hence exactly the equity at the extreme closes."""
        key = (a, b, wallet, held)
        if self._bounds_cache is not None and self._bounds_cache[0] == key:
            return self._bounds_cache[1]
        symbol, qty, cost = held[0]
        close = self.close[symbol][a:b]
        high, low = float(close.max()), float(close.min())
        best, worst = (high, low) if qty > 0 else (low, high)
        bounds = wallet + (qty * best - cost), wallet + (qty * worst - cost)  # `equity`, inlined
        self._bounds_cache = (key, bounds)
        return bounds

    def _coarse_bounds(self, a: int, b: int, wallet: float, held: list) -> tuple[float, float, float]:
        """Like `_bounds` (best ≥, worst ≤ the true ones) plus a VaR bound, from block extremes."""
        key = (a, b, wallet, held)
        cached = self._coarse_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        bounds = self._coarse_uncached(a, b, wallet, held)
        self._coarse_cache = (key, bounds)
        return bounds

    def _coarse_uncached(self, a: int, b: int, wallet: float, held: list) -> tuple[float, float, float]:
        symbol, qty, cost = held[0]
        lowest, highest, vol = self._coarse[symbol]
        low, high = lowest.bound(a, b), highest.bound(a, b)
        best, worst = (high, low) if qty > 0 else (low, high)
        var_bound = self.config.model.z * self.scale * abs(qty) * vol.bound(a, b)
        return wallet + (qty * best - cost), wallet + (qty * worst - cost), var_bound

    def _globally_clear(self, wallet: float, position: tuple[str, float, float]) -> bool:
        """`_clear` from the bounds over the whole timeline, for a backtest without drawdown rules:
        the common case of one position far from every limit, decided in a few float operations."""
        symbol, qty, cost = position
        low, high, vol_max = self._global[symbol]
        worst = wallet + (qty * (low if qty > 0 else high) - cost)
        if not worst > 0:
            return False
        limit = self.config.var_limit
        if limit is None or self._flattening:
            return True
        return self._z * self.scale * abs(qty) * vol_max * (1 + 1e-9) < limit * worst

    def _clear(self, best: float, worst: float, var_bound: float | None) -> bool:
        if not worst > 0:
            return False
        limit = self.config.var_limit
        var_rule = limit is not None and not self._flattening and var_bound is not None
        if var_rule and not var_bound * (1 + 1e-9) < limit * worst:  # type: ignore[operator]
            return False
        levels = self._levels()
        if not levels:
            return True
        peak = self._tracker.peak
        return best <= peak and 1.0 - worst / peak < min(levels)

    def _quick_clear(self, a: int, b: int, wallet: float, held: list) -> bool:
        """True when bounds alone prove no rule fires in [a, b) (one position, no daily-loss
        rule): block extremes first, exact extremes next (`scan` has tried the whole timeline's);
        the per-bar scan decides otherwise."""
        if len(held) != 1 or self.config.daily_loss_halt is not None or self._live:
            return False
        if self._clear(*self._coarse_bounds(a, b, wallet, held)):
            return True
        best, worst = self._bounds(a, b, wallet, held)
        symbol, qty, _ = held[0]
        var_bound = self.config.model.z * self.scale * abs(qty) * float(self._vol_price[symbol][a:b].max())
        return self._clear(best, worst, var_bound)

    def _quick_absorb(self, a: int, b: int, wallet: float, held: list) -> bool:
        """`absorb` from the stretch's extremes when it makes no new equity peak."""
        if len(held) != 1 or self._live:
            return False
        symbol, qty, cost = held[0]
        tracker = self._tracker
        coarse_best, coarse_worst, _ = self._coarse_bounds(a, b, wallet, held)
        if not coarse_best <= tracker.peak and not self._bounds(a, b, wallet, held)[0] <= tracker.peak:
            return False
        last_ts = self.timeline.item(b - 1)
        closes = self.close[symbol]
        day_start = tracker.day_start_equity
        if last_ts // DAY_MS != tracker.day:
            first = int(np.searchsorted(self.timeline, (last_ts // DAY_MS) * DAY_MS))
            day_start = tracker.last_equity
            if first > a:
                day_start = wallet + (qty * closes.item(first - 1) - cost)
            elif first == a and math.isnan(day_start):
                day_start = wallet + (qty * closes.item(a) - cost)
        last = wallet + (qty * closes.item(b - 1) - cost)
        # last_var / last_equity are left for the next on_step, which always recomputes them
        return tracker.absorb_below_peak(
            coarse_worst, lambda: self._exact_worst(a, b, wallet, held[0]), last, last_ts, day_start
        )

    def _exact_worst(self, a: int, b: int, wallet: float, position: tuple[str, float, float]) -> float:
        """The stretch's lowest equity: one reduction, on the side that hurts the position."""
        symbol, qty, cost = position
        close = self.close[symbol][a:b]
        worst = float(close.min() if qty > 0 else close.max())
        return wallet + (qty * worst - cost)

    def _levels(self) -> list[float]:
        """Drawdown levels that would still tighten the current state."""
        if not self._dd_rules:
            return []
        state = self.state.state
        levels = []
        if self.config.drawdown_reduce is not None and state < TradingState.REDUCING:
            levels.append(self.config.drawdown_reduce)
        if self.config.drawdown_halt is not None and state < TradingState.HALTED:
            levels.append(self.config.drawdown_halt)
        return levels

    def var_path(self, positions: dict[str, np.ndarray]) -> np.ndarray:
        """VaR at every step of the timeline for per-step positions (a backtest's result)."""
        symbols = [s for s in self.symbols if s in positions]
        if not symbols:
            return np.zeros(len(self.timeline))
        closes = [self.close[s] for s in symbols]
        var, _ = self._var_es(symbols, [positions[s] for s in symbols], closes, slice(None))
        return np.asarray(var)

    # ------------------------------------------------------------------ internals
    def _require_engine(self) -> "Engine":
        if self._engine is None:
            raise RuntimeError("RiskGuard is not bound to an engine")
        return self._engine

    def _context(self, symbol: str, position: Decimal) -> OrderContext:
        engine = self._require_engine()
        i = len(self.timeline) - 1 if self._live else int(np.searchsorted(self.timeline, engine.now()))
        wallet, held = engine.portfolio.snapshot()
        marks = {s: self.close[s].item(min(i, len(self.timeline) - 1)) for s in self.symbols}
        eq = float(
            equity(wallet, [q for _, q, _ in held], [c for _, _, c in held], [marks[s] for s, _, _ in held])
        )
        gross = sum(abs(q) * marks[s] for s, q, _ in held)
        return OrderContext(position, to_decimal(marks[symbol]), to_decimal(eq), to_decimal(float(gross)))

    def _var_es(self, symbols: list[str], qty: list[float], closes: list, i: int | slice) -> tuple:
        k = [self.index[s] for s in symbols]
        cov = {}
        for a in range(len(k)):
            for b in range(a, len(k)):
                lo, hi = min(k[a], k[b]), max(k[a], k[b])
                path = self.cov[lo, hi]
                cov[a, b] = path.item(i) if isinstance(i, int) else path[i]
        if not symbols:
            return 0.0, 0.0
        return var_es(self.config.model, self.scale, qty, closes, cov)

    def _segment(self, a: int, b: int, wallet: float, held: list) -> tuple[np.ndarray, np.ndarray]:
        symbols = [s for s, _, _ in held]
        qty = [q for _, q, _ in held]
        closes = [self.close[s][a:b] for s in symbols]
        eq = np.broadcast_to(
            np.asarray(equity(wallet, qty, [c for _, _, c in held], closes), dtype=float), (b - a,)
        )
        if not held:
            return eq, np.zeros(b - a)
        var, _ = self._var_es(symbols, qty, closes, slice(a, b))
        return eq, np.asarray(var)

    def _drawdown_fires(self, ts: np.ndarray, eq: np.ndarray) -> np.ndarray:
        """Per step: would the drawdown or daily-loss rules tighten the state there?"""
        fire = np.zeros(len(eq), dtype=bool)
        state = self.state.state
        levels = self._levels()
        if levels and len(eq):
            first_peak = eq[0] if self.drawdown.peak != self.drawdown.peak else self.drawdown.peak
            peak = np.maximum.accumulate(np.concatenate(([first_peak], eq)))[1:]
            with np.errstate(divide="ignore", invalid="ignore"):
                drawdown = np.where(peak > 0, 1.0 - eq / peak, 0.0)
            fire |= drawdown >= min(levels)
        if self.config.daily_loss_halt is not None and state < TradingState.HALTED and len(eq):
            day = ts // DAY_MS
            start = np.empty(len(eq))
            same = day == self.drawdown.day
            start[same] = self.drawdown.day_start_equity
            first_of_day = np.searchsorted(ts, day * DAY_MS)
            previous = np.concatenate(([self.drawdown.last_equity], eq[:-1]))[first_of_day]
            start[~same] = np.where(np.isnan(previous), eq[first_of_day], previous)[~same]
            with np.errstate(divide="ignore", invalid="ignore"):
                loss = np.where(start > 0, np.maximum(0.0, 1.0 - eq / start), 0.0)
            fire |= loss >= self.config.daily_loss_halt
        return fire

    def _apply_rules(self, ts: int, eq: float, var: float, holding: bool) -> None:
        cfg = self.config
        if (
            holding
            and cfg.var_limit is not None
            and not self._flattening
            and (eq <= 0 or var > cfg.var_limit * eq)
        ):
            detail = (
                f"VaR {var:.2f} > {cfg.var_limit:.2%} of equity {eq:.2f}" if eq > 0 else f"equity {eq:.2f}"
            )
            self._liquidate(ts, "var_liquidation", detail, var=var)
        if not self._dd_rules:
            return
        dd = self.drawdown
        halted = self.state.state is TradingState.HALTED
        if cfg.drawdown_halt is not None and dd.drawdown >= cfg.drawdown_halt and not halted:
            self._liquidate(ts, "drawdown_halt", f"drawdown {dd.drawdown:.2%}", var=var)
        elif cfg.drawdown_reduce is not None and dd.drawdown >= cfg.drawdown_reduce:
            self._tighten(ts, TradingState.REDUCING, "drawdown_reduce", f"drawdown {dd.drawdown:.2%}", eq)
        if cfg.daily_loss_halt is not None and dd.daily_loss >= cfg.daily_loss_halt and not halted:
            self._liquidate(ts, "daily_loss", f"daily loss {dd.daily_loss:.2%}", var=var)

    def _tighten(self, ts: int, new: TradingState, kind: str, detail: str, eq: float) -> None:
        if self.state.tighten(new, f"{kind}: {detail}", ts):
            self._record(GuardEvent(ts, kind, detail, self.last_var, eq))

    def _liquidate(
        self, ts: int, kind: str, detail: str, who: str = "guard", var: float = float("nan")
    ) -> None:
        """Cancel every open order and flatten every position with reduce-only market orders; HALT."""
        self.state.tighten(TradingState.HALTED, f"{kind}: {detail}", ts, who)
        self._record(GuardEvent(ts, kind, detail, var, self.last_equity))
        self.liquidations += 1
        self._flattening = True
        if self.metrics is not None:
            self.metrics.guard_liquidation(kind)
        self._keep_flattening(ts)

    def _keep_flattening(self, ts: int) -> None:
        """Until flat: cancel what the strategy has working, (re)send closing orders."""
        engine = self._require_engine()
        for order in engine.open_orders():
            if order.trade_id not in self._own:
                engine.cancel(order.trade_id)
        working = {o.symbol for o in engine.open_orders() if o.trade_id in self._own}
        flat = True
        for symbol, pos in list(engine.portfolio.account.positions.items()):
            if pos.qty == 0:
                continue
            flat = False
            if symbol in working:
                continue
            order = Order(
                trade_id=engine.new_trade_id(),
                symbol=symbol,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                qty=abs(pos.qty),
                type=OrderType.MARKET,
                reduce_only=True,
            )
            self._own.add(order.trade_id)
            self.liquidation_ids.add(order.trade_id)
            engine.submit(order)
            if order.status is OrderStatus.REJECTED:
                self._record(GuardEvent(ts, "liquidation_rejected", f"{symbol}: {order.reject_reason}"))
        if flat and not working:
            self._flattening = False

    def _record(self, event: GuardEvent) -> None:
        self.events.append(event)
        if self.metrics is not None:
            self.metrics.observe(self, force=True)
        if self.on_event is not None:
            self.on_event(event)

    def _control_pending(self) -> bool:
        if self.control is None:
            return False
        latest = self.control.latest()
        return latest is not None and latest.seq > self._seen_control

    def _follow_control(self, ts: int) -> None:
        if self.control is None:
            return
        if not self.control.healthy:
            self.unknown_state("control channel unreachable", ts, cause="control")
        latest = self.control.latest()
        if latest is None or latest.seq <= self._seen_control:
            return
        for command in self._new_commands(latest):
            if self.on_command is not None:
                self.on_command(command)
            if command.action == "brake":
                self.brake(command.reason, command.who, ts)
            else:
                self.resume(command.reason, command.who, ts)
        self._seen_control = latest.seq

    def _new_commands(self, latest: ControlCommand) -> list[ControlCommand]:
        """Commands since the last one seen; the latest alone when history is unavailable."""
        assert self.control is not None
        try:
            newer = [c for c in self.control.history() if c.seq > self._seen_control]
        except Exception:  # history is best effort; the latest command still applies
            newer = []
        return newer or [latest]


class _Deferred:
    """Evaluated bars whose drawdown bookkeeping waits: parallel lists of plain numbers and
    strings (nothing the garbage collector tracks), turned into an equity path in one pass."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.stops: list[int] = []
        self.wallets: list[float] = []
        self.symbols: list[str | None] = []  # one position's symbol; "" flat; None: equity known
        self.qtys: list[float] = []
        self.costs: list[float] = []
        self.known: list[float] = []
        self.several: dict[int, list] = {}  # stretches holding several positions

    def point(self, step: int, wallet: float, eq: float) -> None:
        self._add(step, step + 1, wallet, None, 0.0, 0.0, eq)

    def stretch(self, a: int, b: int, wallet: float, held: list) -> None:
        if len(held) == 1:
            symbol, qty, cost = held[0]
            self._add(a, b, wallet, symbol, qty, cost, math.nan)
        else:
            if held:
                self.several[len(self.starts)] = held
            self._add(a, b, wallet, "", 0.0, 0.0, math.nan)

    def _add(
        self, a: int, b: int, wallet: float, symbol: str | None, qty: float, cost: float, eq: float
    ) -> None:
        self.starts.append(a)
        self.stops.append(b)
        self.wallets.append(wallet)
        self.symbols.append(symbol)
        self.qtys.append(qty)
        self.costs.append(cost)
        self.known.append(eq)

    def equity(self, close: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Steps and their equity, with the same formula and operation order as bar by bar."""
        start = np.array(self.starts, dtype=np.int64)
        lengths = np.array(self.stops, dtype=np.int64) - start
        offsets = np.cumsum(lengths) - lengths
        steps = np.arange(int(lengths.sum())) - np.repeat(offsets - start, lengths)
        wallet = np.repeat(np.array(self.wallets, dtype=float), lengths)
        eq = wallet.copy()  # flat stretches: equity is the wallet
        symbols = np.array(self.symbols, dtype=object)
        points = np.equal(symbols, None)
        eq[offsets[points]] = np.array(self.known)[points]
        qty = np.repeat(np.array(self.qtys), lengths)
        cost = np.repeat(np.array(self.costs), lengths)
        for symbol in set(self.symbols) - {None, ""}:
            rows = np.repeat(symbols == symbol, lengths)
            eq[rows] = wallet[rows] + (qty[rows] * close[symbol][steps[rows]] - cost[rows])
        for k, held in self.several.items():
            a, b = self.starts[k], self.stops[k]
            eq[offsets[k] : offsets[k] + b - a] = equity(
                self.wallets[k],
                [q for _, q, _ in held],
                [c for _, _, c in held],
                [close[s][a:b] for s, _, _ in held],
            )
        return steps, eq


class _Series(list):
    """A growing column for live trading, read like the numpy arrays of a backtest."""

    def item(self, i: int) -> float:
        return self[i]
