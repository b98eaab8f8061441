"""No look-ahead: changing bars after time t never changes any decision made at or before t."""

from decimal import Decimal

import numpy as np
import pytest

from methtrader.data import gbm_bars
from methtrader.engine.backtest import run_backtest
from methtrader.exchange.sim.matching import SimConfig
from methtrader.model import BarSeries
from methtrader.model.instrument import generic_perpetual
from methtrader.strategies import Breakout, SmaCross

INSTRUMENT = generic_perpetual("SYNTHUSDT")


def _splice(base: BarSeries, other: BarSeries, t: int) -> BarSeries:
    """Bars of `base` up to and including index t, then `other`'s (rescaled to join smoothly)."""
    scale = base.close[t] / other.open[t + 1]
    cols = {}
    for name in ("open", "high", "low", "close"):
        cols[name] = np.concatenate([base.column(name)[: t + 1], other.column(name)[t + 1 :] * scale])
    volume = np.concatenate([base.volume[: t + 1], other.volume[t + 1 :]])
    return BarSeries(base.symbol, base.ts, cols["open"], cols["high"], cols["low"], cols["close"], volume)


def _decisions(result, cutoff_ms):
    orders = [
        (o.trade_id, o.side, o.qty, o.type, o.price, o.status if o.created_ts < cutoff_ms else None)
        for o in result.orders
        if o.created_ts <= cutoff_ms
    ]
    fills = [(f.trade_id, f.qty, f.price, f.fee, f.ts) for f in result.fills if f.ts <= cutoff_ms]
    return orders, fills


@pytest.mark.parametrize(
    ("strategy", "vectorised"),
    [
        (SmaCross(fast=5, slow=20, qty=1), True),
        (SmaCross(fast=5, slow=20, qty=1), False),
        (Breakout(qty=1), False),
    ],
)
@pytest.mark.parametrize("t", [400, 1234, 2900])
def test_future_bars_do_not_change_past_decisions(strategy, vectorised, t):
    base = gbm_bars(3_000, seed=11, symbol="SYNTHUSDT", annual_vol=1.5)
    other = gbm_bars(3_000, seed=99, symbol="SYNTHUSDT", annual_vol=3.0)
    spliced = _splice(base, other, t)
    config = SimConfig(funding_rate=Decimal("0.0001"), leverage=Decimal(2))
    cutoff = int(base.ts[t])
    runs = []
    for series in (base, spliced):
        fresh = type(strategy)(**strategy.params())
        result = run_backtest(fresh, [(series, INSTRUMENT)], Decimal(100_000), config, vectorised=vectorised)
        runs.append(result)
    first, second = (_decisions(r, cutoff) for r in runs)
    assert first[0], "the strategy must have decided something before t for the test to mean anything"
    assert first == second
    assert np.array_equal(runs[0].equity[: t + 1], runs[1].equity[: t + 1])
    # and the futures really differ, so the equality above is not trivial
    assert not np.array_equal(runs[0].equity[t + 1 :], runs[1].equity[t + 1 :])
