"""An order and its lifecycle: New → PartiallyFilled → Filled | Cancelled, or Rejected with a reason."""

from dataclasses import dataclass
from decimal import Decimal

from methtrader.model.enums import OrderStatus, OrderType, Side, TimeInForce

_ALLOWED = {
    OrderStatus.NEW: {
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
    },
    OrderStatus.PARTIALLY_FILLED: {
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
    },
    OrderStatus.FILLED: set(),
    OrderStatus.CANCELLED: set(),
    OrderStatus.REJECTED: set(),
}

ZERO = Decimal(0)


class IllegalTransition(RuntimeError):
    """A status change the lifecycle does not allow — a bug in the venue or the engine."""


@dataclass(slots=True, eq=False)
class Order:
    """`trade_id` is ours and travels to Bybit as `orderLinkId`, so a retried request is idempotent."""

    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    created_ts: int = 0
    status: OrderStatus = OrderStatus.NEW
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO
    fees: Decimal = ZERO
    reject_reason: str = ""
    updated_ts: int = 0
    taker_on_arrival: bool = True
    reject_detail: str = ""

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def avg_price(self) -> Decimal | None:
        return self.filled_value / self.filled_qty if self.filled_qty else None

    @property
    def signed_leaves(self) -> Decimal:
        return self.leaves_qty if self.side is Side.BUY else -self.leaves_qty

    def transition(self, status: OrderStatus, ts: int) -> None:
        if status not in _ALLOWED[self.status]:
            raise IllegalTransition(f"order {self.trade_id}: {self.status} -> {status}")
        self.status = status
        self.updated_ts = ts

    def reject(self, reason: str, ts: int) -> None:
        self.transition(OrderStatus.REJECTED, ts)
        self.reject_reason = reason

    def record_fill(self, qty: Decimal, price: Decimal, fee: Decimal, ts: int) -> None:
        if not self.status.is_open:
            raise IllegalTransition(f"order {self.trade_id}: fill on a {self.status} order")
        if qty <= 0 or qty > self.leaves_qty:
            raise IllegalTransition(f"order {self.trade_id}: fill {qty} of leaves {self.leaves_qty}")
        self.filled_qty += qty
        self.filled_value += qty * price
        self.fees += fee
        done = self.filled_qty == self.qty
        self.transition(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, ts)
