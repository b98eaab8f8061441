"""Plain domain types: instruments, bars, orders, fills, positions and the account. No I/O."""

from methtrader.model.account import Account
from methtrader.model.bar import Bar, BarSeries
from methtrader.model.enums import Liquidity, OrderStatus, OrderType, Side, TimeInForce
from methtrader.model.fill import Fill
from methtrader.model.instrument import Instrument, OrderRejected
from methtrader.model.order import Order
from methtrader.model.position import Position

__all__ = [
    "Account",
    "Bar",
    "BarSeries",
    "Fill",
    "Instrument",
    "Liquidity",
    "Order",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "Position",
    "Side",
    "TimeInForce",
]
