"""gbm_bars(): reproducible by seed, always valid OHLCV, and loadable like real data.

Tests and benchmarks built on synthetic bars are only meaningful if the bars obey the same rules.
"""

from pathlib import Path

import numpy as np
import pytest

from methtrader.data import gbm_bars, load_bars, save_bars

COLUMNS = ("ts", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def bars():
    return gbm_bars(100_000, seed=7, jump_intensity=0.01, jump_std=0.1)


def test_same_seed_same_bars() -> None:
    a, b = gbm_bars(10_000, seed=42), gbm_bars(10_000, seed=42)
    for name in COLUMNS:
        np.testing.assert_array_equal(a.column(name), b.column(name))


def test_different_seeds_differ() -> None:
    a, b = gbm_bars(1000, seed=1), gbm_bars(1000, seed=2)
    assert not np.array_equal(a.close, b.close)
    assert not np.array_equal(a.volume, b.volume)


def test_ohlc_rules_hold(bars) -> None:
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.low > 0)
    assert np.all(bars.volume > 0)
    assert np.all(np.isfinite(np.stack([bars.column(n) for n in COLUMNS[1:]])))
    np.testing.assert_array_equal(bars.open[1:], bars.close[:-1])
    assert bars.open[0] == 100.0


def test_times_and_dtypes(bars) -> None:
    assert bars.ts.dtype == np.int64
    assert bars.close.dtype == np.float64
    assert bars.ts[0] % 60_000 == 0
    assert bars.ts[0] == 1_599_999_960_000
    assert np.all(np.diff(bars.ts) == 60_000)
    assert bars.symbol == "SYNTH"
    assert len(bars) == 100_000


def test_volatility_and_jumps_are_used() -> None:
    calm = gbm_bars(50_000, seed=3, annual_vol=0.1, jump_intensity=0.0)
    wild = gbm_bars(50_000, seed=3, annual_vol=1.0, jump_intensity=0.0)
    calm_vol, wild_vol = (np.std(np.diff(np.log(s.close))) for s in (calm, wild))
    assert wild_vol == pytest.approx(10 * calm_vol, rel=0.05)
    jumpy = gbm_bars(50_000, seed=3, annual_vol=0.1, jump_intensity=0.01, jump_std=0.05)
    assert np.max(np.abs(np.diff(np.log(jumpy.close)))) > 0.05


def test_extreme_parameters_stay_positive() -> None:
    crash = gbm_bars(
        20_000, seed=9, annual_drift=-5.0, annual_vol=3.0, jump_intensity=0.05, jump_mean=-0.05, jump_std=0.1
    )
    assert np.all(crash.low > 0)
    assert np.all(crash.close > 0)


def test_loader_accepts_synthetic_bars(tmp_path: Path) -> None:
    path = tmp_path / "synth.parquet"
    series = gbm_bars(5000, seed=4, jump_intensity=0.02)
    save_bars(series, path)
    np.testing.assert_array_equal(load_bars(path).close, series.close)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        gbm_bars(-1)
    with pytest.raises(ValueError):
        gbm_bars(10, start_price=0.0)
    with pytest.raises(ValueError):
        gbm_bars(10, interval_ms=0)
    with pytest.raises(ValueError):
        gbm_bars(10, jump_intensity=1.5)
    assert len(gbm_bars(0)) == 0
