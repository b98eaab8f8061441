"""Pre-trade limits: each limit's reason code, exemptions for reducing orders, and the rate limit."""

from decimal import Decimal as D

import pytest

from methtrader.model import Order, OrderType, Side
from methtrader.risk.limits import Limits, OrderContext, OrderRateLimit, check_limits, reduces

CTX = OrderContext(position=D("1"), mark=D("100"), equity=D("1000"), gross_exposure=D("300"))


def order(side: Side, qty: str, price: str | None = None, reduce_only: bool = False) -> Order:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return Order("t", "X", side, D(qty), kind, None if price is None else D(price), reduce_only=reduce_only)


@pytest.mark.parametrize(
    ("limits", "candidate", "reason"),
    [
        (Limits(max_order_notional=D(500)), order(Side.BUY, "6"), "max_order_notional"),  # 600 > 500
        (Limits(max_position_notional=D(500)), order(Side.BUY, "5"), "max_position_notional"),  # (1+5)×100
        (Limits(max_gross_exposure=D(700)), order(Side.BUY, "5"), "max_gross_exposure"),  # 300−100+600
        (Limits(max_leverage=D("0.5")), order(Side.BUY, "4"), "max_leverage"),  # 700 > 0.5 × 1000
        (Limits(price_band=D("0.05")), order(Side.BUY, "1", "106"), "price_band"),  # 6 % away
        (Limits(price_band=D("0.05")), order(Side.SELL, "1", "94"), "price_band"),
        (Limits(max_order_notional=D(500)), order(Side.BUY, "4"), None),  # 400 passes
        (Limits(price_band=D("0.05")), order(Side.BUY, "1", "105"), None),  # exactly 5 % passes
        (Limits(max_order_notional=D(10)), order(Side.SELL, "1"), None),  # reduces: exempt from size
        (Limits(max_order_notional=D(10)), order(Side.SELL, "5", reduce_only=True), None),
        (Limits(max_order_notional=D(10)), order(Side.SELL, "2"), "max_order_notional"),  # flips: not exempt
    ],
)
def test_limit_reasons(limits, candidate, reason):
    assert check_limits(candidate, limits, CTX) == reason


def test_reduces():
    assert reduces(order(Side.SELL, "0.5"), D(1))
    assert reduces(order(Side.SELL, "1"), D(1))
    assert not reduces(order(Side.SELL, "2"), D(1))
    assert not reduces(order(Side.BUY, "1"), D(1))
    assert not reduces(order(Side.SELL, "1"), D(0))
    assert reduces(order(Side.BUY, "1"), D(-3))


def test_order_rate_limit_is_a_rolling_minute():
    rate = OrderRateLimit(3)
    assert [rate.allow(t) for t in (0, 10_000, 20_000, 30_000)] == [True, True, True, False]
    assert rate.allow(60_001)  # the first order left the window
    assert OrderRateLimit(None).allow(0)
