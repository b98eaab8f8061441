"""One-way linear position: signed cost basis, realised PnL = qty × (exit − entry)."""

from decimal import Decimal as D

from methtrader.model import Position


def test_flat_position() -> None:
    p = Position("TESTUSDT")
    assert p.qty == 0
    assert p.cost == 0
    assert p.avg_entry == 0
    assert p.unrealised_pnl(D("123")) == 0
    assert p.notional(D("123")) == 0


def test_long_add_reduce_reverse_walkthrough() -> None:
    p = Position("TESTUSDT")

    # open long 0.5 @ 100: cost = 0.5 × 100 = 50
    assert p.apply(D("0.5"), D("100")) == 0
    assert (p.qty, p.cost, p.avg_entry) == (D("0.5"), D("50.0"), D("100"))

    # add 0.5 @ 110: cost = 50 + 55 = 105, qty 1 → avg 105
    assert p.apply(D("0.5"), D("110")) == 0
    assert p.qty == D("1.0")
    assert p.cost == D("105")
    assert p.avg_entry == D("105")
    # unrealised at 120: 1 × 120 − 105 = 15
    assert p.unrealised_pnl(D("120")) == D("15")
    assert p.notional(D("120")) == D("120")

    # sell 0.4 @ 120: removed cost = 105 × 0.4 / 1 = 42; pnl = 0.4 × 120 − 42 = 48 − 42 = 6
    assert p.apply(D("-0.4"), D("120")) == D("6")
    assert p.qty == D("0.6")
    assert p.cost == D("63")  # 105 − 42
    assert p.avg_entry == D("105")
    assert p.realised_pnl == D("6")

    # sell 1.0 @ 100: closes 0.6 (pnl 0.6 × 100 − 63 = −3), opens short 0.4 @ 100 (cost −40)
    assert p.apply(D("-1.0"), D("100")) == D("-3")
    assert p.qty == D("-0.4")
    assert p.cost == D("-40")
    assert p.avg_entry == D("100")
    assert p.realised_pnl == D("3")  # 6 − 3

    # short PnL: unrealised at 90 = −0.4 × 90 − (−40) = −36 + 40 = +4; at 110 = −44 + 40 = −4
    assert p.unrealised_pnl(D("90")) == D("4")
    assert p.unrealised_pnl(D("110")) == D("-4")
    assert p.notional(D("90")) == D("36")

    # buy back 0.4 @ 95: pnl = −0.4 × 95 − (−40) = −38 + 40 = 2
    assert p.apply(D("0.4"), D("95")) == D("2")
    assert p.qty == 0
    assert p.cost == 0
    assert p.avg_entry == 0
    assert p.realised_pnl == D("5")  # 6 − 3 + 2


def test_short_open_add_and_partial_cover() -> None:
    p = Position("TESTUSDT")
    # sell 1 @ 200 and 1 @ 180: cost = −200 − 180 = −380, qty −2, avg 190
    p.apply(D("-1"), D("200"))
    p.apply(D("-1"), D("180"))
    assert p.qty == D("-2")
    assert p.cost == D("-380")
    assert p.avg_entry == D("190")
    # buy 0.5 @ 170: removed = −380 × 0.5 / 2 = −95; pnl = −0.5 × 170 − (−95) = −85 + 95 = 10
    # (= 0.5 × (190 − 170))
    assert p.apply(D("0.5"), D("170")) == D("10")
    assert p.qty == D("-1.5")
    assert p.cost == D("-285")
    # buy 2 @ 200: closes 1.5 → pnl = −1.5 × 200 + 285 = −15; opens long 0.5 @ 200
    assert p.apply(D("2"), D("200")) == D("-15")
    assert p.qty == D("0.5")
    assert p.cost == D("100")
    assert p.avg_entry == D("200")
    assert p.realised_pnl == D("-5")


def test_exact_close_through_zero_has_no_residual_cost() -> None:
    p = Position("TESTUSDT")
    # three buys at awkward prices: cost 0.3×100.01 + 0.3×100.02 + 0.3×100.04 = 30.003 + 30.006 + 30.012
    for price in ("100.01", "100.02", "100.04"):
        p.apply(D("0.3"), D(price))
    assert p.cost == D("90.021")
    # close 1/3 (non-terminating ratio): removed = 90.021 × 0.3 / 0.9 = 30.007 exactly
    assert p.apply(D("-0.3"), D("101")) == D("30.3") - D("30.007")
    # close 0.1 of 0.6: removed = 60.014 × 0.1 / 0.6 = 10.00233333... → quantised to 1e-12
    pnl = p.apply(D("-0.1"), D("101"))
    assert pnl == D("10.1") - D("10.002333333333")
    assert p.cost == D("60.014") - D("10.002333333333")
    # the last close removes the whole remaining cost, so nothing is left behind
    p.apply(D("-0.5"), D("99"))
    assert p.qty == 0
    assert p.cost == 0


def test_realised_plus_unrealised_equals_sum_of_fill_pnl() -> None:
    """For any fill sequence: realised + unrealised(M) == Σ signed_qty × (M − price)."""
    p = Position("TESTUSDT")
    fills = [("0.7", "100"), ("-0.3", "103.33"), ("-1.1", "97.21"), ("0.25", "99.99"), ("0.9", "101.07")]
    for q, price in fills:
        p.apply(D(q), D(price))
    mark = D("102.5")
    expected = sum((D(q) * (mark - D(price)) for q, price in fills), D(0))
    assert p.realised_pnl + p.unrealised_pnl(mark) == expected
    assert p.qty == sum((D(q) for q, _ in fills), D(0))
