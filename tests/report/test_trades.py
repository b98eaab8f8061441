"""Round trips from hand-built fill sequences, with PnL and fees worked out by hand."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from methtrader.model import Fill, Liquidity, Side
from methtrader.report import RoundTrip, round_trips

D = Decimal


def test_open_add_partial_close_close(make_fill):
    fills = [
        make_fill("Buy", "1", "100", "0.1", 1000),
        make_fill("Buy", "1", "110", "0.11", 2000),  # 2 @ avg 105
        make_fill("Sell", "0.5", "120", "0.06", 3000, realised="7.5"),  # 0.5 × (120 − 105)
        make_fill("Sell", "1.5", "100", "0.15", 4000, realised="-7.5"),  # 1.5 × (100 − 105)
    ]
    assert round_trips(fills) == [
        RoundTrip(
            symbol="BTCUSDT",
            side="Long",
            entry_ts=1000,
            exit_ts=4000,
            qty=D("2"),
            entry_price=D("105"),  # (100 + 110) / 2
            exit_price=D("105"),  # (0.5 × 120 + 1.5 × 100) / 2
            pnl=D("-0.42"),  # 7.5 − 7.5 − (0.1 + 0.11 + 0.06 + 0.15)
            fees=D("0.42"),
            is_open=False,
        )
    ]


def test_reversal_through_zero_splits_fee_pro_rata(make_fill):
    fills = [
        make_fill("Sell", "2", "50", "0.2", 1),
        # Buys 5: closes the short of 2 (2 × (50 − 40) = 20) and opens a long of 3.
        make_fill("Buy", "5", "40", "0.5", 2, realised="20"),
        make_fill("Sell", "3", "45", "0.3", 3, realised="15"),  # 3 × (45 − 40)
    ]
    short, long = round_trips(fills)
    assert short == RoundTrip("BTCUSDT", "Short", 1, 2, D(2), D(50), D(40), D("19.6"), D("0.4"), False)
    # fee of the reversing fill: 0.5 × 2/5 = 0.2 to the short, 0.5 × 3/5 = 0.3 to the long
    assert long == RoundTrip("BTCUSDT", "Long", 2, 3, D(3), D(40), D(45), D("14.4"), D("0.6"), False)


def test_uneven_fee_split_keeps_total_fees_exact(make_fill):
    fills = [
        make_fill("Buy", "1", "10", "0", 1),
        make_fill("Sell", "3", "10", "1", 2),  # closes 1 (fee 1/3), opens short 2 (fee 2/3)
        make_fill("Buy", "2", "10", "0", 3),
    ]
    first, second = round_trips(fills)
    assert first.fees + second.fees == D(1)
    assert first.fees == pytest.approx(D(1) / 3)
    assert (first.side, second.side, second.qty) == ("Long", "Short", D(2))


def test_trade_still_open_at_end(make_fill):
    fills = [
        make_fill("Buy", "2", "10", "0.02", 5),
        make_fill("Sell", "1", "12", "0.012", 6, realised="2"),  # 1 × (12 − 10)
    ]
    (trip,) = round_trips(fills)
    assert trip.is_open
    assert trip.exit_ts is None
    assert trip.exit_price is None
    assert trip.qty == D(2)
    assert trip.entry_price == D(10)
    assert trip.fees == D("0.032")
    assert trip.pnl == D("1.968")  # realised so far minus all fees so far, not marked to market


def test_symbols_are_tracked_separately_and_output_is_by_entry_time(make_fill):
    fills = [
        make_fill("Buy", "1", "100", ts=1, symbol="BTCUSDT"),
        make_fill("Sell", "4", "20", ts=2, symbol="ETHUSDT"),
        make_fill("Sell", "1", "101", ts=3, symbol="BTCUSDT", realised="1"),
        make_fill("Buy", "1", "99", ts=4, symbol="BTCUSDT"),
        make_fill("Buy", "4", "19", ts=5, symbol="ETHUSDT", realised="4"),
    ]
    trips = round_trips(fills)
    assert [(t.symbol, t.entry_ts, t.exit_ts) for t in trips] == [
        ("BTCUSDT", 1, 3),
        ("ETHUSDT", 2, 5),
        ("BTCUSDT", 4, None),
    ]
    assert [t.pnl for t in trips] == [D(1), D(4), D(0)]
    assert [t.is_open for t in trips] == [False, False, True]


def test_short_scaled_in_records_max_size_and_vwap(make_fill):
    fills = [
        make_fill("Sell", "1", "30", ts=1),
        make_fill("Sell", "3", "34", ts=2),  # 4 short @ (30 + 102) / 4 = 33
        make_fill("Buy", "1", "32", ts=3, realised="1"),
        make_fill("Sell", "1", "35", ts=4),  # back to 4 short, max stays 4
        make_fill("Buy", "4", "30", ts=5, realised="13"),
    ]
    (trip,) = round_trips(fills)
    assert trip.side == "Short"
    assert trip.qty == D(4)
    assert trip.entry_price == D(167) / D(5)  # (30 + 102 + 35) / 5
    assert trip.exit_price == D(152) / D(5)  # (32 + 120) / 5
    assert trip.pnl == D(14)


def test_no_fills_no_trades():
    assert round_trips([]) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BTCUSDT", "ETHUSDT"]),
            st.integers(-5, 5).filter(bool),
            st.integers(1, 9),
        ),
        max_size=30,
    )
)
def test_every_fee_and_realised_pnl_lands_in_exactly_one_trade(steps):
    fills = [
        Fill(
            exec_id=str(i),
            trade_id=str(i),
            symbol=symbol,
            side=Side.BUY if qty > 0 else Side.SELL,
            qty=D(abs(qty)),
            price=D(100),
            fee=D(fee) / 100,
            liquidity=Liquidity.TAKER,
            ts=i,
            realised_pnl=D(i % 3 - 1),
        )
        for i, (symbol, qty, fee) in enumerate(steps)
    ]
    trips = round_trips(fills)
    assert sum((t.fees for t in trips), D(0)) == sum((f.fee for f in fills), D(0))
    realised = sum((f.realised_pnl for f in fills), D(0))
    assert sum((t.pnl + t.fees for t in trips), D(0)) == pytest.approx(realised, abs=D("1e-20"))
    assert [t.entry_ts for t in trips] == sorted(t.entry_ts for t in trips)
    assert sum(t.is_open for t in trips) <= 2
