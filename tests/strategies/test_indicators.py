"""Indicators give bit-identical values vectorised (backtest) and streamed bar by bar (live)."""

import numpy as np
import pytest

from methtrader.data import gbm_bars
from methtrader.strategies import SMA, Frame, Highest, Lowest
from methtrader.strategies.indicators import StreamFrames


def _on_grid(series, tick):
    snap = lambda x: np.round(np.round(x / tick) * tick, 10)  # noqa: E731
    o, h, low, c = (snap(getattr(series, k)) for k in ("open", "high", "low", "close"))
    return type(series)(series.symbol, series.ts, o, h, low, c, series.volume)


@pytest.mark.parametrize("tick", [None, 0.01, 0.5])
@pytest.mark.parametrize(
    "indicator", [SMA(1), SMA(10), SMA(200), Highest(20), Lowest(7), SMA(5, "high"), SMA(4, "volume")]
)
def test_vector_and_stream_are_identical(indicator, tick):
    series = gbm_bars(5_000, seed=3) if tick is None else _on_grid(gbm_bars(5_000, seed=3), tick)
    vector = indicator.vector(series, tick)
    stream = indicator.stream(tick)
    streamed = np.array([stream.update(series.bar(i)) for i in range(len(series))])
    assert np.array_equal(vector, streamed, equal_nan=True)
    assert np.isnan(vector[: indicator.period - 1]).all()
    assert not np.isnan(vector[indicator.period - 1 :]).any()


def test_sma_values_by_hand():
    series = gbm_bars(5, seed=1)
    closes = series.close
    sma = SMA(3).vector(series)
    assert sma[2] == pytest.approx((closes[0] + closes[1] + closes[2]) / 3, rel=1e-15)
    assert sma[4] == pytest.approx((closes[2] + closes[3] + closes[4]) / 3, rel=1e-12)


def test_integer_sums_keep_exact_ties():
    # closes 1.1, 2.2, 3.3: the 3-bar average is 2.2 exactly, equal to the 1-bar average at bar 1
    series = gbm_bars(3, seed=1)
    closes = np.array([1.1, 2.2, 3.3])
    series = type(series)(series.symbol, series.ts, closes, closes, closes, closes, series.volume)
    assert SMA(3).vector(series, 0.1)[2] == SMA(1).vector(series, 0.1)[1] == 2.2
    assert SMA(3).vector(series)[2] != 2.2  # what plain float sums say: 2.1999999999999997


def test_frame_gives_arrays_or_scalars_and_prev():
    columns = {"a": np.array([1.0, 2.0, 3.0])}
    whole = Frame(columns, None)
    assert np.array_equal(whole.a, columns["a"])
    assert np.array_equal(whole.prev.a, [np.nan, 1.0, 2.0], equal_nan=True)
    at = Frame(columns, 2)
    assert at.a == 3.0 and at.prev.a == 2.0 and at.prev.prev.prev.a != at.prev.prev.prev.a  # NaN
    with pytest.raises(AttributeError, match="no indicator"):
        _ = at.missing


def test_stream_frames_match_vector_frame():
    series = gbm_bars(300, seed=9)
    indicators = {"fast": SMA(5), "hi": Highest(10)}
    frames = StreamFrames(indicators)
    vec = {name: ind.vector(series) for name, ind in indicators.items()}
    for i in range(len(series)):
        frame = frames.update(series.bar(i))
        for name in indicators:
            assert np.array_equal(frame.__getattr__(name), vec[name][i], equal_nan=True)
            if i:
                assert np.array_equal(frame.prev.__getattr__(name), vec[name][i - 1], equal_nan=True)
        assert frame.close == series.close[i]
