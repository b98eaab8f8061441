"""Unified-margin account: wallet, equity, initial/maintenance margin and availability by hand."""

from decimal import Decimal as D

from methtrader.model import Account
from methtrader.model.instrument import generic_perpetual

A = generic_perpetual("AAAUSDT")
B = generic_perpetual("BBBUSDT")
INSTRUMENTS = {"AAAUSDT": A, "BBBUSDT": B}


def test_empty_account() -> None:
    acc = Account(wallet_balance=D("1000"))
    assert acc.equity({}) == D("1000")
    assert acc.initial_margin({}) == 0
    assert acc.maintenance_margin({}, INSTRUMENTS) == 0
    assert acc.available_balance({}) == D("1000")
    assert acc.available_balance({}, order_margin=D("250")) == D("750")


def test_book_fill_moves_wallet_by_pnl_minus_fee() -> None:
    acc = Account(wallet_balance=D("1000"), leverage=D("5"))
    # buy 2 @ 100, fee 0.11 (taker 0.00055 × 200): wallet 1000 − 0.11 = 999.89
    assert acc.book_fill("AAAUSDT", D("2"), D("100"), D("0.11")) == 0
    assert acc.wallet_balance == D("999.89")
    assert acc.fees_paid == D("0.11")
    # sell 1 @ 110, fee 0.0605: pnl = 1 × (110 − 100) = 10 → wallet 999.89 + 10 − 0.0605 = 1009.8295
    assert acc.book_fill("AAAUSDT", D("-1"), D("110"), D("0.0605")) == D("10")
    assert acc.wallet_balance == D("1009.8295")
    assert acc.fees_paid == D("0.1705")
    assert acc.position("AAAUSDT").qty == D("1")
    assert acc.position("AAAUSDT").cost == D("100")


def test_equity_and_margins_two_symbols() -> None:
    acc = Account(wallet_balance=D("1000"), leverage=D("5"))
    acc.book_fill("AAAUSDT", D("2"), D("100"), D("0"))  # long 2 @ 100, cost 200
    acc.book_fill("BBBUSDT", D("-3"), D("50"), D("0"))  # short 3 @ 50, cost −150
    marks = {"AAAUSDT": D("110"), "BBBUSDT": D("40")}
    # upl A = 2 × 110 − 200 = 20; upl B = −3 × 40 + 150 = 30 → equity 1000 + 50 = 1050
    assert acc.equity(marks) == D("1050")
    # notional A = 2 × 110 = 220; B = 3 × 40 = 120; total 340 → IM = 340 / 5 = 68
    assert acc.initial_margin(marks) == D("68")
    # MM = 340 × 0.005 = 1.7
    assert acc.maintenance_margin(marks, INSTRUMENTS) == D("1.7")
    # available = 1050 − 68 = 982; minus 100 of order margin = 882
    assert acc.available_balance(marks) == D("982")
    assert acc.available_balance(marks, order_margin=D("100")) == D("882")


def test_losing_short_and_flat_positions_ignored() -> None:
    acc = Account(wallet_balance=D("100"), leverage=D("2"))
    acc.book_fill("AAAUSDT", D("-1"), D("100"), D("0"))
    acc.book_fill("BBBUSDT", D("1"), D("10"), D("0"))
    acc.book_fill("BBBUSDT", D("-1"), D("12"), D("0"))  # closed: +2 realised → wallet 102
    assert acc.wallet_balance == D("102")
    # B is flat: its mark is not even needed
    marks = {"AAAUSDT": D("130")}
    # upl = −1 × 130 + 100 = −30 → equity 102 − 30 = 72
    assert acc.equity(marks) == D("72")
    # IM = 130 / 2 = 65; MM = 130 × 0.005 = 0.65; available = 72 − 65 = 7
    assert acc.initial_margin(marks) == D("65")
    assert acc.maintenance_margin(marks, INSTRUMENTS) == D("0.65")
    assert acc.available_balance(marks) == D("7")


def test_funding_paid_and_received() -> None:
    acc = Account(wallet_balance=D("500"))
    acc.book_funding(D("0.0202"))  # paid
    assert acc.wallet_balance == D("499.9798")
    acc.book_funding(D("-0.05"))  # received
    assert acc.wallet_balance == D("500.0298")
    assert acc.funding_paid == D("-0.0298")


def test_position_created_on_demand() -> None:
    acc = Account(wallet_balance=D("1"))
    pos = acc.position("AAAUSDT")
    assert pos.qty == 0
    assert acc.position("AAAUSDT") is pos
