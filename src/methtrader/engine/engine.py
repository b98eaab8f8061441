"""The engine: strategy → risk hook → venue → fills → portfolio, one synchronous code path.

It is what a strategy sees as its context. Runners (backtest here, paper and live later) only
decide where bars come from, which clock ticks and which venue executes.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from methtrader.engine.portfolio import Portfolio
from methtrader.engine.risk_hook import NoRisk, RiskHook
from methtrader.model import Fill, Instrument, Order, OrderStatus
from methtrader.strategies.base import Strategy
from methtrader.strategies.indicators import Frame

ZERO = Decimal(0)


class Clock(Protocol):
    def now(self) -> int: ...


class Venue(Protocol):
    """Where orders execute: the in-process matching engine, or a Bybit adapter's order queue."""

    open_orders: dict[str, list[Order]]

    def submit(self, order: Order, ts: int) -> Order: ...

    def cancel(self, trade_id: str, ts: int) -> Order | None: ...


class Engine:
    """Dispatches bars and fills to the strategy and routes its orders through the risk hook."""

    def __init__(
        self,
        strategy: Strategy,
        venue: Venue,
        instruments: dict[str, Instrument],
        clock: Clock,
        portfolio: Portfolio,
        trade_ids: Callable[[], str],
        risk: RiskHook | None = None,
    ) -> None:
        self.strategy = strategy
        self.venue = venue
        self.instruments = instruments
        self.clock = clock
        self.portfolio = portfolio
        self.risk = risk or NoRisk()
        self.trade_ids = trade_ids
        self.orders: list[Order] = []
        self.frames: dict[str, Frame] = {}
        strategy.bind(self)
        self.risk.bind(self)

    # ------------------------------------------------------------ StrategyContext
    def now(self) -> int:
        return self.clock.now()

    def position(self, symbol: str) -> Decimal:
        return self.portfolio.position(symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self.venue.open_orders.get(symbol, ()))
        return [o for orders in self.venue.open_orders.values() for o in orders]

    def pending_qty(self, symbol: str) -> Decimal:
        """Signed quantity still working in open, position-opening orders of `symbol`."""
        working = self.venue.open_orders.get(symbol)
        if not working:
            return ZERO
        return sum((o.signed_leaves for o in working if not o.reduce_only), ZERO)

    def instrument(self, symbol: str) -> Instrument:
        return self.instruments[symbol]

    def new_trade_id(self) -> str:
        return self.trade_ids()

    def frame(self, symbol: str) -> Frame:
        return self.frames[symbol]

    def submit(self, order: Order) -> Order:
        """Every order is recorded; the risk hook may deny it (status Rejected, `risk:` reason)."""
        self.orders.append(order)
        denied = self.risk.check(order)
        if denied is not None:
            order.created_ts = order.updated_ts = self.clock.now()
            order.status = OrderStatus.REJECTED
            order.reject_reason = f"risk:{denied}"
            return order
        return self.venue.submit(order, self.clock.now())

    def cancel(self, trade_id: str) -> Order | None:
        return self.venue.cancel(trade_id, self.clock.now())

    # ------------------------------------------------------------ events in
    def on_fills(self, fills: list[Fill]) -> None:
        for fill in fills:
            self.portfolio.on_fill(fill)
            self.risk.on_fill(fill)
            self.strategy.on_fill(fill)

    def on_funding(self, amount: Decimal) -> None:
        self.portfolio.on_funding(amount)
