"""Parity: sma_cross 10/30 through the whole engine trades exactly like a ten-line numpy
implementation written here independently (integer-cent sums, next-open fills)."""

from decimal import Decimal

import numpy as np
import pytest

from methtrader.data import gbm_bars
from methtrader.engine.backtest import run_backtest
from methtrader.exchange.sim.matching import SimConfig
from methtrader.model import BarSeries
from methtrader.model.instrument import generic_perpetual
from methtrader.strategies import SmaCross


def reference_fills(open_: np.ndarray, close: np.ndarray, fast: int, slow: int, qty: float):
    """(fill bar, signed qty, price) of an always-in-the-market crossover filled at the next open,
    in exact integer cents: fast > slow  <=>  slow·Σfast > fast·Σslow, so ties are real ties."""
    cents = np.concatenate(([0], np.cumsum(np.rint(close * 100).astype(np.int64))))
    f = np.full(len(close), -1, np.int64)
    s = np.full(len(close), -1, np.int64)
    f[slow - 1 :] = (cents[slow:] - cents[slow - fast : -fast]) * slow
    s[slow - 1 :] = (cents[slow:] - cents[:-slow]) * fast
    valid = np.arange(len(close)) >= slow  # both averages defined at this bar and the one before
    up = valid[1:] & (f[:-1] <= s[:-1]) & (f[1:] > s[1:])
    down = valid[1:] & (f[:-1] >= s[:-1]) & (f[1:] < s[1:])
    signal_bar = np.flatnonzero(up | down) + 1
    target = np.where(up[signal_bar - 1], qty, -qty)
    keep = np.concatenate(([True], target[1:] != target[:-1]))  # a repeated cross changes nothing
    signal_bar, target = signal_bar[keep], target[keep]
    traded = np.diff(np.concatenate(([0.0], target)))
    fill_bar = signal_bar + 1
    ok = fill_bar < len(close)
    return list(zip(fill_bar[ok].tolist(), traded[ok].tolist(), open_[fill_bar[ok]].tolist(), strict=True))


def test_sma_cross_matches_independent_numpy_on_50k_bars():
    raw = gbm_bars(50_000, seed=2024, symbol="SYNTHUSDT")
    o, h, low, c = (np.round(x, 2) for x in (raw.open, raw.high, raw.low, raw.close))
    series = BarSeries(
        raw.symbol,
        raw.ts,
        o,
        np.maximum(h, np.maximum(o, c)),
        np.minimum(low, np.minimum(o, c)),
        c,
        raw.volume,
    )
    config = SimConfig(fee_taker=Decimal("0.00055"), funding_rate=Decimal(0))
    result = run_backtest(
        SmaCross(fast=10, slow=30, qty=1),
        [(series, generic_perpetual("SYNTHUSDT"))],
        Decimal(10_000_000),
        config,
    )
    index = {int(t): i for i, t in enumerate(series.ts)}
    ours = [(index[f.ts], float(f.signed_qty), float(f.price)) for f in result.fills]
    expected = reference_fills(o, c, 10, 30, 1.0)
    assert len(expected) > 1_500
    assert ours == expected
    fees = sum(abs(q) * p * 0.00055 for _, q, p in expected)
    assert float(result.fees_paid) == pytest.approx(fees, rel=1e-12)
    assert all(f.liquidity == "Taker" for f in result.fills)
