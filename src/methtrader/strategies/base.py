"""The strategy API: typed parameters, lifecycle callbacks and the order actions a strategy has.

A strategy never talks to an exchange; it acts through the `StrategyContext` the engine binds,
so the same class runs in backtest, paper and live.
"""

import math
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, get_type_hints

import numpy as np

from methtrader.model import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from methtrader.model.instrument import to_decimal
from methtrader.strategies.indicators import Frame, Indicator

ZERO = Decimal(0)


class StrategyError(ValueError):
    """Bad strategy name, parameter name or parameter value: a one-line message for the user."""


class StrategyContext(Protocol):
    """What the engine offers a strategy: the clock, positions, orders and instruments."""

    def now(self) -> int: ...

    def position(self, symbol: str) -> Decimal: ...

    def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    def instrument(self, symbol: str) -> Instrument: ...

    def submit(self, order: Order) -> Order: ...

    def cancel(self, trade_id: str) -> Order | None: ...

    def new_trade_id(self) -> str: ...

    def frame(self, symbol: str) -> Frame: ...

    def pending_qty(self, symbol: str) -> Decimal: ...


def _coerce(name: str, kind: type, value: object) -> object:
    if (isinstance(value, kind) and not isinstance(value, bool)) or (
        kind is bool and isinstance(value, bool)
    ):
        return value
    text = str(value).strip()
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            result = float(text)
            if not math.isfinite(result):
                raise ValueError(text)
            return result
        if kind is Decimal:
            result = Decimal(text)
            if not result.is_finite():
                raise ValueError(text)
            return result
        return kind(text)
    except (ValueError, InvalidOperation):
        raise StrategyError(f"parameter {name}={value!r} is not a valid {kind.__name__}") from None


class Strategy:
    """Subclass, declare parameters as annotated class attributes with defaults, override the
    callbacks you need. Either override `on_bar`, or write `signal(x)` — a target position from
    indicator values using numpy operations — and the engine may evaluate it vectorised.
    """

    name: ClassVar[str] = ""
    _ctx: StrategyContext

    def __init__(self, **params: object) -> None:
        spec = self.param_spec()
        unknown = sorted(set(params) - set(spec))
        if unknown:
            known = ", ".join(spec) or "none"
            raise StrategyError(f"unknown parameter {unknown[0]!r} for {self.label} (known: {known})")
        for key, (kind, default) in spec.items():
            value = _coerce(key, kind, params[key]) if key in params else default
            setattr(self, key, value)
        self._targets: dict[str, Decimal] = {}
        self._latched: dict[str, Decimal] = {}
        self._exact: dict[float, Decimal] = {}
        self._steps: dict[str, Decimal] = {}
        self.validate()

    # --------------------------------------------------------------- declaration
    @classmethod
    def param_spec(cls) -> dict[str, tuple[type, object]]:
        """Parameter name → (type, default), from the annotations of subclasses."""
        hints = get_type_hints(cls)
        spec = {}
        for klass in reversed(cls.__mro__):
            if klass in (Strategy, object):
                continue
            for key in getattr(klass, "__annotations__", {}):
                if (
                    key.startswith("_")
                    or key not in hints
                    or getattr(hints[key], "__origin__", None) is ClassVar
                ):
                    continue
                if key in klass.__dict__:
                    spec[key] = (hints[key], klass.__dict__[key])
        return spec

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def params(self) -> dict[str, object]:
        return {key: getattr(self, key) for key in self.param_spec()}

    def validate(self) -> None:
        """Raise StrategyError for parameter combinations that make no sense."""

    def indicators(self) -> dict[str, Indicator]:
        """Named indicators the engine computes for every symbol (vectorised or streaming)."""
        return {}

    # --------------------------------------------------------------- callbacks
    def bind(self, ctx: StrategyContext) -> None:
        self._ctx = ctx

    def on_start(self) -> None:
        """Called once before the first bar."""

    def on_bar(self, bar: Bar) -> None:
        """Called on every bar of every symbol, after that bar's fills. The default evaluates
        `signal` and moves the position to its target."""
        target = self.signal(self._ctx.frame(bar.symbol))
        self.hold_target(bar.symbol, as_float(target))

    def on_fill(self, fill: Fill) -> None:
        """Called for every fill of this strategy's orders (liquidations included)."""

    def on_stop(self) -> None:
        """Called once after the last bar."""

    signal: Any = None
    """Optional `signal(x: Frame) -> target qty | NaN (no opinion)`, pure in the indicator values:
    evaluated on whole arrays in a backtest and on single values live, with the same code."""

    @classmethod
    def is_vectorisable(cls) -> bool:
        return cls.signal is not None and cls.on_bar is Strategy.on_bar

    # --------------------------------------------------------------- actions
    def position(self, symbol: str) -> Decimal:
        return self._ctx.position(symbol)

    def values(self, symbol: str) -> Frame:
        """Indicator and bar values of `symbol` at the current bar (`.prev` for the one before)."""
        return self._ctx.frame(symbol)

    def buy(self, symbol: str, qty: object, price: object = None, **kwargs: Any) -> Order:
        return self._order(Side.BUY, symbol, qty, price, **kwargs)

    def sell(self, symbol: str, qty: object, price: object = None, **kwargs: Any) -> Order:
        return self._order(Side.SELL, symbol, qty, price, **kwargs)

    def close(self, symbol: str) -> Order | None:
        """Flatten `symbol` with a reduce-only market order."""
        qty = self.position(symbol)
        if qty == 0:
            return None
        side = Side.SELL if qty > 0 else Side.BUY
        return self._order(side, symbol, abs(qty), None, reduce_only=True)

    def cancel(self, trade_id: str) -> Order | None:
        return self._ctx.cancel(trade_id)

    def target_position(self, symbol: str, qty: object) -> Order | None:
        """Send the market order that brings position plus pending orders to `qty` (signed).
        A target the venue rejected is not retried until the target changes."""
        target = to_decimal(qty)
        if self._latched.get(symbol) == target:
            return None
        self._latched.pop(symbol, None)
        diff = self._ctx.instrument(symbol).round_qty(
            target - self._ctx.position(symbol) - self._ctx.pending_qty(symbol)
        )
        if diff == 0:
            return None
        order = self._order(Side.of(diff), symbol, abs(diff), None)
        if order.status is OrderStatus.REJECTED:
            self._latched[symbol] = target
        return order

    def hold_target(self, symbol: str, target: float) -> None:
        """Remember a signal's target (NaN keeps the last one) and trade towards it."""
        if not math.isnan(target):
            exact = self._exact.get(target)
            if exact is None:
                exact = self._exact[target] = to_decimal(target)
            self._targets[symbol] = exact
        if symbol in self._targets:
            self.target_position(symbol, self._targets[symbol])

    def unsatisfied(self) -> bool:
        """True while a held target is neither reached nor given up: the engine must keep
        waking this strategy every bar instead of only on signal changes."""
        position = self._ctx.position
        for symbol, target in self._targets.items():
            if self._latched.get(symbol) == target:
                continue
            step = self._steps.get(symbol)
            if step is None:
                step = self._steps[symbol] = self._ctx.instrument(symbol).qty_step
            if abs(target - position(symbol)) >= step:
                return True
        return False

    def _order(
        self,
        side: Side,
        symbol: str,
        qty: object,
        price: object,
        tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
    ) -> Order:
        order = Order(
            trade_id=self._ctx.new_trade_id(),
            symbol=symbol,
            side=side,
            qty=to_decimal(qty),
            type=OrderType.MARKET if price is None else OrderType.LIMIT,
            price=None if price is None else to_decimal(price),
            tif=tif,
            reduce_only=reduce_only,
        )
        return self._ctx.submit(order)


def as_float(value: object) -> float:
    """A signal's result (0-d array, numpy scalar or float) as a plain float."""
    return float(np.asarray(value, dtype=float))
