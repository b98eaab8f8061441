"""Pre-trade limits: every order is checked against position, exposure, leverage, size, price
band and rate limits. A denial is a reason code that gets recorded, never a silent drop."""

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from methtrader.model import Order, OrderType, Side


@dataclass(frozen=True)
class Limits:
    """None switches a limit off. Notionals in USDT; `price_band` is a fraction of the last price."""

    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_leverage: Decimal | None = None
    max_order_notional: Decimal | None = None
    price_band: Decimal | None = Decimal("0.05")
    max_orders_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class OrderContext:
    """What the limits need to know about the account when an order is checked."""

    position: Decimal
    mark: Decimal
    equity: Decimal
    gross_exposure: Decimal  # Σ |qty| × mark over all symbols, before this order


def reduces(order: Order, position: Decimal) -> bool:
    """True when the order can only bring |position| down (never flips or adds)."""
    signed = order.qty if order.side is Side.BUY else -order.qty
    after = position + signed
    return position != 0 and (after == 0 or (after > 0) == (position > 0)) and abs(after) < abs(position)


def check_limits(order: Order, limits: Limits, ctx: OrderContext) -> str | None:
    """The first limit the order breaks, as a reason code, or None. Orders that only reduce the
    position pass the size and exposure limits (a limit must never trap a position)."""
    band = limits.price_band
    limit_price = order.price if order.type is OrderType.LIMIT else None
    if band is not None and limit_price is not None and abs(limit_price - ctx.mark) > ctx.mark * band:
        return "price_band"
    if reduces(order, ctx.position) or order.reduce_only:
        return None
    price = order.price if order.price is not None else ctx.mark
    notional = order.qty * price
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return "max_order_notional"
    signed = order.qty if order.side is Side.BUY else -order.qty
    after = abs(ctx.position + signed) * ctx.mark
    if limits.max_position_notional is not None and after > limits.max_position_notional:
        return "max_position_notional"
    gross = ctx.gross_exposure - abs(ctx.position) * ctx.mark + after
    if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure:
        return "max_gross_exposure"
    if limits.max_leverage is not None and (ctx.equity <= 0 or gross > ctx.equity * limits.max_leverage):
        return "max_leverage"
    return None


class OrderRateLimit:
    """At most `per_minute` orders in any rolling 60 seconds of the engine clock."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self.sent: deque[int] = deque()

    def allow(self, now_ms: int) -> bool:
        if self.per_minute is None:
            return True
        while self.sent and self.sent[0] <= now_ms - 60_000:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            return False
        self.sent.append(now_ms)
        return True
