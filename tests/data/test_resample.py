"""resample(): epoch-aligned OHLCV buckets agree with hand aggregation and with pandas.

Coarser timeframes feed strategies directly, so a wrong bucket boundary would shift every signal.
"""

import numpy as np
import pandas as pd
import pytest

from methtrader.data import gbm_bars, load_dataset, resample
from methtrader.data.resample import rule_to_ms
from methtrader.model.bar import HOUR_MS, BarSeries


def pandas_resample(series: BarSeries, rule: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {name: series.column(name) for name in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime(series.ts, unit="ms"),
    )
    how = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    return frame.resample(rule).agg(how).dropna(subset=["open"])


def hand_bucket(series: BarSeries, start_ms: int, length_ms: int) -> tuple[float, ...]:
    rows = [series.bar(i) for i in range(len(series)) if start_ms <= series.ts[i] < start_ms + length_ms]
    return (
        rows[0].open,
        max(bar.high for bar in rows),
        min(bar.low for bar in rows),
        rows[-1].close,
        sum(bar.volume for bar in rows),
    )


def at(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


@pytest.fixture(scope="module")
def five_minute() -> BarSeries:
    return load_dataset("btcusdt-5m-2021")


@pytest.fixture(scope="module")
def hourly(five_minute: BarSeries) -> BarSeries:
    return resample(five_minute, "1h")


@pytest.mark.parametrize(
    "start",
    [
        "2021-03-16T00:00",  # first bucket
        "2021-05-19T13:00",  # crash hour: low 30,000 at 13:10Z
        "2021-04-20T01:00",  # just before the maintenance gap
        "2021-04-20T04:00",  # partial bucket after the gap (04:30..04:55)
        "2021-06-14T10:00",  # last bucket
    ],
)
def test_hourly_buckets_match_hand_aggregation(five_minute: BarSeries, hourly: BarSeries, start: str) -> None:
    i = int(np.searchsorted(hourly.ts, at(start)))
    assert hourly.ts[i] == at(start)
    bar = hourly.bar(i)
    expected = hand_bucket(
        five_minute.between(at(start) - HOUR_MS, at(start) + 2 * HOUR_MS), at(start), HOUR_MS
    )
    assert (bar.open, bar.high, bar.low, bar.close) == expected[:4]
    assert bar.volume == pytest.approx(expected[4], rel=1e-12)


def test_crash_hour_and_gap(hourly: BarSeries) -> None:
    assert hourly.bar(int(np.searchsorted(hourly.ts, at("2021-05-19T13:00")))).low == 30000.0
    assert at("2021-04-20T02:00") not in hourly.ts
    assert at("2021-04-20T03:00") not in hourly.ts


def test_hourly_matches_pandas(five_minute: BarSeries, hourly: BarSeries) -> None:
    expected = pandas_resample(five_minute, "1h")
    assert len(hourly) == len(expected)
    np.testing.assert_array_equal(hourly.ts, expected.index.as_unit("ms").asi8)
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(hourly.column(name), expected[name].to_numpy(), name)
    np.testing.assert_allclose(hourly.volume, expected["volume"].to_numpy(), rtol=1e-12)
    assert hourly.symbol == five_minute.symbol


@pytest.mark.parametrize(("rule", "pandas_rule"), [("4h", "4h"), ("1d", "1D"), ("15m", "15min")])
def test_other_rules_match_pandas(rule: str, pandas_rule: str) -> None:
    series = gbm_bars(20_000, seed=5, interval_ms=300_000)
    ours = resample(series, rule)
    expected = pandas_resample(series, pandas_rule)
    np.testing.assert_array_equal(ours.ts, expected.index.as_unit("ms").asi8)
    np.testing.assert_array_equal(ours.close, expected["close"].to_numpy())
    np.testing.assert_array_equal(ours.high, expected["high"].to_numpy())


def test_hourly_file_to_daily_matches_pandas() -> None:
    series = load_dataset("btcusdt-1h-2019-2020")
    daily = resample(series, "1d")
    expected = pandas_resample(series, "1D")
    assert len(daily) == len(expected) == 729
    np.testing.assert_array_equal(daily.low, expected["low"].to_numpy())


def test_rule_parsing() -> None:
    assert rule_to_ms("5m") == 300_000
    assert rule_to_ms("4h") == 4 * HOUR_MS
    assert rule_to_ms("1d") == 86_400_000
    assert rule_to_ms("30s") == 30_000
    for bad in ("1M", "0h", "h", "1 hour", "1.5h", "-1d", "1w"):
        with pytest.raises(ValueError, match="accepted: <positive integer><unit>"):
            rule_to_ms(bad)


def test_rule_must_be_a_multiple_of_bar_spacing(five_minute: BarSeries) -> None:
    with pytest.raises(ValueError, match="whole multiple"):
        resample(five_minute, "1m")
    with pytest.raises(ValueError, match="whole multiple"):
        resample(five_minute, "7m")


def test_empty_and_same_rule() -> None:
    series = gbm_bars(100, seed=1, interval_ms=300_000)
    assert len(resample(series.take(slice(0, 0)), "1h")) == 0
    same = resample(series, "5m")
    np.testing.assert_array_equal(same.close, series.close)
    np.testing.assert_array_equal(same.ts, series.ts)
