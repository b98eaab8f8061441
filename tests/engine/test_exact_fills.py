"""Zero-slippage market fills are exactly the fill bar's open (issue 19, item 4).

Bar prices are floats; the runner snaps them to the instrument's tick and the matching engine
reads them back as Decimals through their shortest repr, rounding up for buys and down for
sells. A snapped float that was not the nearest double to its tick multiple (29799.1 as
29799.100000000002) became a whole tick against the trader: 29799.11 for a buy at 29799.1.
"""

from dataclasses import replace
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from methtrader.engine.backtest import BacktestRunner, snap_to_tick
from methtrader.exchange.sim.matching import SimConfig
from methtrader.exchange.sim.slippage import FixedSlippage
from methtrader.model import BarSeries, OrderType
from methtrader.model.instrument import generic_perpetual, to_decimal
from methtrader.strategies import Strategy

HOUR = 3_600_000
ZERO_SLIPPAGE = SimConfig(funding_rate=Decimal(0), slippage=FixedSlippage(0))
TICKS = [Decimal(t) for t in ("0.01", "0.1", "0.5", "0.25", "0.0001", "0.005", "1", "5", "0.00000001")]


class Flip(Strategy):
    """Long after an up bar, short after a down bar: a market order whenever the direction turns."""

    qty: Decimal = Decimal("0.01")

    def signal(self, x):
        return np.where(x.close >= x.open, float(self.qty), -float(self.qty))


def _series(levels: list[int], tick: Decimal, grid: int, encode: str = "nearest"):
    """Bars over price levels counted in ticks: bar i opens at level i and closes at level i + 1,
    high and low one grid step beyond. Returns the series and each bar's exact open.

    `encode` is how the prices arrive as floats: "nearest" (as a CSV parser reads them), or
    "product" (k × float(tick), a float reconstruction a hair off the decimal)."""
    lv = np.array(levels, dtype=np.int64)
    o, c = lv[:-1], lv[1:]
    h, low = np.maximum(o, c) + grid, np.minimum(o, c) - grid
    if encode == "nearest":
        as_float = np.vectorize(lambda k: float(Decimal(int(k)) * tick), otypes=[float])
    else:
        as_float = np.vectorize(lambda k: float(k) * float(tick), otypes=[float])
    n = len(o)
    ts = np.arange(n, dtype=np.int64) * HOUR + 1_600_000_000_000
    series = BarSeries("GRIDUSDT", ts, as_float(o), as_float(h), as_float(low), as_float(c), np.full(n, 1e6))
    return series, [Decimal(int(k)) * tick for k in o]


def _run(series: BarSeries, tick: Decimal, vectorised: bool):
    inst = replace(generic_perpetual(series.symbol), tick_size=tick, min_notional=Decimal(0))
    runner = BacktestRunner(Flip(), [(series, inst)], Decimal(10**12), ZERO_SLIPPAGE, vectorised=vectorised)
    return runner.run()


def _off_open(result, series: BarSeries, opens: list[Decimal]) -> list[tuple[int, str, Decimal, Decimal]]:
    """Market fills whose price is not exactly their bar's open: (ts, side, open, fill price)."""
    index = {int(t): i for i, t in enumerate(series.ts)}
    orders = {o.trade_id: o for o in result.orders}
    market = [f for f in result.fills if orders[f.trade_id].type is OrderType.MARKET]
    assert len(market) == len(result.fills)
    return [
        (f.ts, f.side.value, opens[index[f.ts]], f.price) for f in market if f.price != opens[index[f.ts]]
    ]


def test_fills_at_the_open_on_a_tenth_grid_with_cent_ticks():
    """The issue's repro: prices on a 0.1 grid around 29799.1, the default 0.01 tick. Before
    the fix 102 of 998 fills (every tenth buy) printed at open + 0.01 in either mode."""
    rng = np.random.default_rng(19)
    tenths = 297_991 + np.cumsum(rng.integers(-30, 31, 2_000))
    series, opens = _series((tenths * 10).tolist(), Decimal("0.01"), 10)
    assert 29799.1 in series.open
    assert generic_perpetual("GRIDUSDT").tick_size == Decimal("0.01")
    for vectorised in (True, False):
        result = _run(series, Decimal("0.01"), vectorised)
        assert len(result.fills) > 900
        assert {f.side.value for f in result.fills} == {"Buy", "Sell"}
        off = _off_open(result, series, opens)
        assert off == [], f"{len(off)} of {len(result.fills)} fills off the open, e.g. {off[:3]}"


@settings(max_examples=300, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    k=st.integers(1, 10**12),
    off=st.one_of(st.just(0.0), st.floats(-0.4, 0.4)),
)
def test_snap_gives_the_float_whose_repr_is_the_tick_multiple(tick, k, off):
    """Any float within 0.4 tick of k ticks, k × float(tick) included, snaps to the float
    nearest k × tick: the one the Decimal of its repr reads back as k × tick exactly."""
    exact = Decimal(k) * tick
    if len(exact.normalize().as_tuple().digits) > 15:
        return  # more digits than a float carries as a short decimal
    raw = (k + off) * float(tick)
    (snapped,) = snap_to_tick(np.array([raw]), tick)
    assert to_decimal(float(snapped)) == exact
    assert float(snapped) == float(exact)


@settings(max_examples=30, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    grid=st.sampled_from([1, 2, 5, 10, 25, 100]),
    digits=st.integers(2, 9),
    leading=st.integers(100, 999),
    steps=st.lists(st.integers(-4, 4), min_size=10, max_size=60),
    encode=st.sampled_from(["nearest", "product"]),
)
def test_zero_slippage_market_fills_equal_the_bar_open_in_both_paths(
    tick, grid, digits, leading, steps, encode
):
    """For prices on any grid that is a multiple of the tick, at any level (up to 12 digits of
    ticks), every market fill of either path is that bar's open, exactly."""
    start = max(leading * 10**digits // 100, 2 + 4 * len(steps))  # lows stay above zero
    levels = (grid * (start + np.concatenate(([0], np.cumsum(steps))))).tolist()
    series, opens = _series(levels, tick, grid, encode)
    fills = []
    for vectorised in (True, False):
        result = _run(series, tick, vectorised)
        assert _off_open(result, series, opens) == []
        fills.append([(f.ts, f.side, f.qty, f.price) for f in result.fills])
    assert fills[0] == fills[1]
