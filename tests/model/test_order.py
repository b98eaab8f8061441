"""Order lifecycle: New → PartiallyFilled → Filled | Cancelled; Rejected only from New."""

from decimal import Decimal as D

import pytest

from methtrader.model import Order, OrderStatus, OrderType, Side, TimeInForce
from methtrader.model.order import IllegalTransition

S = OrderStatus


def _order(qty: str = "1", side: Side = Side.BUY) -> Order:
    return Order(trade_id="t1", symbol="TESTUSDT", side=side, qty=D(qty))


def test_defaults() -> None:
    o = _order()
    assert o.status is S.NEW
    assert o.type is OrderType.MARKET
    assert o.tif is TimeInForce.GTC
    assert o.price is None
    assert not o.reduce_only
    assert o.filled_qty == 0
    assert o.leaves_qty == D("1")
    assert o.avg_price is None
    assert o.status.is_open


def test_partial_then_filled() -> None:
    o = _order("1")
    o.record_fill(D("0.4"), D("100"), D("0.022"), ts=1)
    assert o.status is S.PARTIALLY_FILLED
    assert o.filled_qty == D("0.4")
    assert o.leaves_qty == D("0.6")
    assert o.signed_leaves == D("0.6")
    assert o.updated_ts == 1
    o.record_fill(D("0.6"), D("110"), D("0.0363"), ts=2)
    assert o.status is S.FILLED
    assert not o.status.is_open
    assert o.leaves_qty == 0
    # avg = (0.4×100 + 0.6×110) / 1 = (40 + 66) / 1 = 106
    assert o.avg_price == D("106")
    assert o.filled_value == D("106.0")
    # fees add up: 0.022 + 0.0363 = 0.0583
    assert o.fees == D("0.0583")
    assert o.updated_ts == 2


def test_signed_leaves_for_sell() -> None:
    o = _order("2", Side.SELL)
    o.record_fill(D("0.5"), D("100"), D("0"), ts=1)
    assert o.signed_leaves == D("-1.5")


def test_partial_then_more_partials_then_cancel() -> None:
    o = _order("1")
    o.record_fill(D("0.1"), D("100"), D("0"), ts=1)
    o.record_fill(D("0.1"), D("100"), D("0"), ts=2)
    assert o.status is S.PARTIALLY_FILLED
    o.transition(S.CANCELLED, ts=3)
    assert o.status is S.CANCELLED
    assert o.filled_qty == D("0.2")


@pytest.mark.parametrize("target", [S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED])
def test_new_can_go_anywhere(target: OrderStatus) -> None:
    o = _order()
    o.transition(target, ts=5)
    assert o.status is target
    assert o.updated_ts == 5


def test_reject_sets_reason() -> None:
    o = _order()
    o.reject("qty_below_minimum", ts=7)
    assert o.status is S.REJECTED
    assert o.reject_reason == "qty_below_minimum"
    assert o.updated_ts == 7


def test_rejected_only_from_new() -> None:
    o = _order()
    o.record_fill(D("0.5"), D("100"), D("0"), ts=1)
    with pytest.raises(IllegalTransition):
        o.reject("late", ts=2)
    assert o.status is S.PARTIALLY_FILLED
    assert o.reject_reason == ""


@pytest.mark.parametrize("final", [S.FILLED, S.CANCELLED, S.REJECTED])
@pytest.mark.parametrize("target", list(S))
def test_terminal_states_are_final(final: OrderStatus, target: OrderStatus) -> None:
    o = _order()
    o.transition(final, ts=1)
    with pytest.raises(IllegalTransition):
        o.transition(target, ts=2)
    assert o.status is final
    assert o.updated_ts == 1


def test_partially_filled_cannot_go_back_to_new() -> None:
    o = _order()
    o.transition(S.PARTIALLY_FILLED, ts=1)
    with pytest.raises(IllegalTransition):
        o.transition(S.NEW, ts=2)


def test_new_to_new_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        _order().transition(S.NEW, ts=1)


@pytest.mark.parametrize("qty", ["0", "-0.1", "1.001"])
def test_record_fill_rejects_bad_quantities(qty: str) -> None:
    o = _order("1")
    with pytest.raises(IllegalTransition):
        o.record_fill(D(qty), D("100"), D("0"), ts=1)
    assert o.filled_qty == 0
    assert o.status is S.NEW


def test_overfill_after_partial() -> None:
    o = _order("1")
    o.record_fill(D("0.7"), D("100"), D("0"), ts=1)
    with pytest.raises(IllegalTransition):
        o.record_fill(D("0.4"), D("100"), D("0"), ts=2)
    assert o.filled_qty == D("0.7")


def test_fill_on_cancelled_order_raises() -> None:
    o = _order("1")
    o.transition(S.CANCELLED, ts=1)
    with pytest.raises(IllegalTransition):
        o.record_fill(D("0.5"), D("100"), D("0"), ts=2)
    # the rejected fill must not have been half-applied
    assert o.status is S.CANCELLED
    assert o.filled_qty == 0
    assert o.filled_value == 0
    assert o.fees == 0


def test_status_values_are_bybit_strings() -> None:
    assert [s.value for s in S] == ["New", "PartiallyFilled", "Filled", "Cancelled", "Rejected"]
    assert {s for s in S if s.is_open} == {S.NEW, S.PARTIALLY_FILLED}
