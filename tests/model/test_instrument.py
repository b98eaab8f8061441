"""Instrument rounding (price half-even to the tick, qty down to the step) and order minimums."""

from decimal import Decimal as D

import pytest

from methtrader.model import Instrument, OrderRejected
from methtrader.model.instrument import BTCUSDT, generic_perpetual, to_decimal

GENERIC = generic_perpetual("TESTUSDT")


def test_generic_perpetual_spec() -> None:
    assert GENERIC.symbol == "TESTUSDT"
    assert GENERIC.base_coin == "TEST"
    assert GENERIC.tick_size == D("0.01")
    assert GENERIC.qty_step == D("0.001")
    assert GENERIC.min_qty == D("0.001")
    assert GENERIC.min_notional == D("5")
    assert GENERIC.taker_fee == D("0.00055")
    assert GENERIC.maker_fee == D("0.0002")


def test_btcusdt_spec() -> None:
    assert BTCUSDT.tick_size == D("0.10")
    assert BTCUSDT.qty_step == D("0.001")
    assert BTCUSDT.min_qty == D("0.001")
    assert BTCUSDT.min_notional == D("5")
    assert BTCUSDT.max_leverage == D("100")
    assert BTCUSDT.maintenance_margin_rate == D("0.005")


def test_to_decimal_uses_shortest_float_repr() -> None:
    assert to_decimal(0.1) == D("0.1")  # not 0.1000000000000000055511151231257827...
    assert to_decimal(0.1 + 0.2) == D("0.30000000000000004")
    assert to_decimal("1.50") == D("1.50")
    assert to_decimal(7) == D(7)
    d = D("2.5")
    assert to_decimal(d) is d


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # 100.005 / 0.01 = 10000.5 ticks -> half-even -> 10000 -> 100.00
        ("100.005", D("100.00")),
        # 100.015 / 0.01 = 10001.5 ticks -> half-even -> 10002 -> 100.02
        ("100.015", D("100.02")),
        # 100.0051 is past the half -> up
        ("100.0051", D("100.01")),
        # 100.0049 is before the half -> down
        ("100.0049", D("100.00")),
        ("99.99", D("99.99")),
        # floats go through repr: 101.005 is exactly 10100.5 ticks -> even 10100
        (101.005, D("101.00")),
        (0.1 + 0.2, D("0.30")),
    ],
)
def test_round_price_half_even_to_tick(raw: object, expected: D) -> None:
    assert GENERIC.round_price(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # tick 0.10: 100.05 = 1000.5 ticks -> even 1000 -> 100.0; 100.15 = 1001.5 ticks -> 1002 -> 100.2
        ("100.05", D("100.0")),
        ("100.15", D("100.2")),
        ("100.16", D("100.2")),
        ("29999.94", D("29999.9")),
    ],
)
def test_round_price_btc_tick(raw: str, expected: D) -> None:
    assert BTCUSDT.round_price(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.0019", D("0.001")),  # down, never up to 0.002
        ("0.0010", D("0.001")),
        ("0.0009", D("0")),
        ("1.2345", D("1.234")),
        ("-0.0019", D("-0.001")),  # magnitude rounded down
        (0.7, D("0.700")),
    ],
)
def test_round_qty_down_to_step(raw: object, expected: D) -> None:
    assert GENERIC.round_qty(raw) == expected


def test_round_qty_never_exceeds_request() -> None:
    for n in range(1, 2000):
        raw = D(n) / D(1999)
        rounded = GENERIC.round_qty(raw)
        assert rounded <= raw
        assert raw - rounded < GENERIC.qty_step
        assert rounded % GENERIC.qty_step == 0


def _reason(inst: Instrument, qty: str, price: str, reduce_only: bool = False) -> str:
    with pytest.raises(OrderRejected) as exc:
        inst.check_order(D(qty), D(price), reduce_only)
    return exc.value.reason


def test_check_order_rejections() -> None:
    assert _reason(GENERIC, "0", "100") == "qty_not_positive"
    assert _reason(GENERIC, "-0.001", "100") == "qty_not_positive"
    # 0.049 × 100 = 4.9 USDT < 5
    assert _reason(GENERIC, "0.049", "100") == "notional_below_minimum"
    # limit price counts: 0.05 × 99.99 = 4.9995 < 5
    assert _reason(GENERIC, "0.05", "99.99") == "notional_below_minimum"
    assert _reason(GENERIC, "1", "0") == "price_not_positive"


def test_check_order_accepts_at_minimums() -> None:
    GENERIC.check_order(D("0.05"), D("100"))  # 0.05 × 100 = 5 USDT, exactly the minimum
    GENERIC.check_order(D("0.001"), D("5000"))  # min qty, 5 USDT
    # a reduce-only order may be below the notional minimum (it closes a position)
    GENERIC.check_order(D("0.001"), D("100"), reduce_only=True)


def test_check_order_min_qty_above_step() -> None:
    inst = Instrument(
        symbol="CUSTOMUSDT",
        tick_size=D("0.5"),
        qty_step=D("0.001"),
        min_qty=D("0.01"),
        min_notional=D("1"),
        max_leverage=D("20"),
        maker_fee=D("0"),
        taker_fee=D("0"),
    )
    assert _reason(inst, "0.009", "1000") == "qty_below_minimum"
    assert _reason(inst, "0.009", "1000", reduce_only=True) == "qty_below_minimum"
    inst.check_order(D("0.01"), D("1000"))
    assert inst.round_price("100.25") == D("100.0")  # 200.5 ticks of 0.5 -> even 200
    assert inst.round_price("100.75") == D("101.0")  # 201.5 ticks -> even 202


def test_order_rejected_carries_reason() -> None:
    exc = OrderRejected("qty_below_minimum", "qty 1 < min 2")
    assert exc.reason == "qty_below_minimum"
    assert exc.detail == "qty 1 < min 2"
    assert str(exc) == "qty_below_minimum: qty 1 < min 2"
    assert str(OrderRejected("x")) == "x"
    assert isinstance(exc, ValueError)
