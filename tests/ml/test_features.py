"""Features: hand-checked values, no look-ahead, and the same floats over a whole series or a
live window of lookback + 1 bars."""

import math

import numpy as np
import pytest

from methtrader.data import load_dataset
from methtrader.ml.features import (
    DEFAULT_FEATURES,
    FEATURES,
    FeatureError,
    build_features,
    feature_matrix,
    log_return,
    lookback,
    next_bar_label,
    parse_features,
    raw_window,
    rsi,
    series_columns,
    sma_ratio,
    training_set,
    volatility,
    zscore,
)
from methtrader.model import BarSeries


def series(close, volume=None, high=None, low=None) -> BarSeries:
    close = np.asarray(close, dtype=float)
    n = len(close)
    return BarSeries(
        "TEST",
        np.arange(n, dtype=np.int64) * 60_000,
        close.copy(),
        np.asarray(high if high is not None else close, dtype=float),
        np.asarray(low if low is not None else close, dtype=float),
        close,
        np.asarray(volume if volume is not None else np.ones(n), dtype=float),
    )


def test_log_returns_by_hand():
    close = np.array([100.0, 110.0, 99.0, 99.0])
    r1 = log_return(close, 1)
    assert math.isnan(r1[0])
    assert r1[1] == pytest.approx(math.log(1.1)) and r1[2] == pytest.approx(math.log(0.9)) and r1[3] == 0.0
    r2 = log_return(close, 2)
    assert (
        np.isnan(r2[:2]).all()
        and r2[2] == pytest.approx(math.log(0.99))
        and r2[3] == pytest.approx(-0.1053605)
    )
    assert np.isnan(log_return(close, 5)).all()


def test_volatility_rsi_zscore_sma_ratio_by_hand():
    close = np.array([1.0, 2.0, 4.0, 2.0])
    # returns: nan, ln2, ln2, -ln2; over 2: std(ln2, ln2) = 0, std(ln2, -ln2) = ln2
    vol = volatility(close, 2)
    assert np.isnan(vol[:2]).all() and vol[2] == 0.0 and vol[3] == pytest.approx(math.log(2))
    # changes +1, +2, -2: RSI(3) at bar 3 = 100 * 3 / 5
    value = rsi(close, 3)
    assert np.isnan(value[:3]).all() and value[3] == pytest.approx(60.0)
    assert rsi(np.array([5.0, 5.0, 5.0]), 2)[2] == 50.0  # no change at all
    assert rsi(np.array([1.0, 2.0, 3.0]), 2)[2] == 100.0
    z = zscore(np.array([1.0, 2.0, 3.0, 3.0, 3.0]), 3)
    assert np.isnan(z[:2]).all()
    assert z[2] == pytest.approx(1 / math.sqrt(2 / 3)) and z[4] == 0.0  # constant window → 0
    ratio = sma_ratio(np.array([1.0, 3.0]), 2)
    assert math.isnan(ratio[0]) and ratio[1] == pytest.approx(0.5)


def test_range_and_label():
    s = series([10.0, 10.0, 12.0, 11.0], high=[11.0, 10.5, 12.0, 12.0], low=[9.0, 10.0, 12.0, 10.0])
    x = build_features(s, ["range_1"])
    assert x[:, 0].tolist() == pytest.approx([0.2, 0.05, 0.0, 2 / 11])
    label = next_bar_label(s.close)
    assert label[:3].tolist() == [0.0, 1.0, 0.0] and math.isnan(label[3])  # flat counts as not up


def test_parse_features():
    assert parse_features(None) == DEFAULT_FEATURES
    assert parse_features(" ret_1, rsi_14 ") == ("ret_1", "rsi_14")
    with pytest.raises(FeatureError, match="unknown feature 'nope'"):
        parse_features("ret_1,nope")
    with pytest.raises(FeatureError, match="duplicate"):
        parse_features("ret_1,ret_1")
    with pytest.raises(FeatureError, match="no feature"):
        parse_features(" , ")


def test_warm_up_matches_lookback():
    s = load_dataset("btcusd-daily").take(slice(0, 60))
    x = build_features(s, DEFAULT_FEATURES)
    for j, name in enumerate(DEFAULT_FEATURES):
        first = int(np.flatnonzero(~np.isnan(x[:, j]))[0])
        assert first == FEATURES[name].lookback, name


def test_no_look_ahead():
    s = load_dataset("btcusdt-1h-2019-2020").take(slice(0, 400))
    base = build_features(s)
    rng = np.random.default_rng(7)
    for cut in (30, 150, 399):
        changed = {k: v.copy() for k, v in series_columns(s).items()}
        for name in ("open", "high", "low", "close", "volume"):
            changed[name][cut + 1 :] *= rng.uniform(0.5, 2.0, len(changed[name]) - cut - 1)
        other = feature_matrix(changed, DEFAULT_FEATURES)
        np.testing.assert_array_equal(other[: cut + 1], base[: cut + 1])
        if cut + 1 < len(s):
            assert not np.array_equal(other[cut + 1 :], base[cut + 1 :], equal_nan=True)


def test_live_window_gives_the_same_floats():
    s = load_dataset("btcusdt-1h-2019-2020").take(slice(0, 300))
    names = DEFAULT_FEATURES
    full = build_features(s, names)
    columns = series_columns(s)
    for t in range(lookback(names), len(s)):
        window = raw_window(columns, t, names)
        assert len(window["close"]) == lookback(names) + 1
        last = feature_matrix(window, names)[-1]
        assert last.tobytes() == full[t].tobytes(), t


def test_training_set_drops_warm_up_and_last_bar():
    s = load_dataset("btcusd-daily").take(slice(0, 100))
    x, y, rows = training_set(s, ["ret_1", "ret_20"])
    assert rows[0] == 20 and rows[-1] == 98 and x.shape == (79, 2)
    assert set(np.unique(y)) <= {0, 1}
    assert y.tolist() == (s.close[rows + 1] > s.close[rows]).astype(int).tolist()
