"""load_bars/save_bars: every validation failure names the file and row; good files round-trip.

Bad data must never reach a backtest silently, and users must be able to find the bad line.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from methtrader.data import DataError, gbm_bars, load_bars, save_bars
from methtrader.model.bar import DAY_MS, BarSeries

HEADER = "date,open,high,low,close,volume"
GOOD_ROWS = [
    "2021-01-01,10,12,9,11,100",
    "2021-01-02,11,13,10,12,100",
    "2021-01-03,12,14,11,13,100",
]


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def with_row(line: int, text: str) -> list[str]:
    """GOOD_ROWS with the row on physical CSV line `line` (header = line 1) replaced."""
    rows = list(GOOD_ROWS)
    rows[line - 2] = text
    return rows


def assert_row_error(exc: pytest.ExceptionInfo[DataError], path: Path, row: int, reason: str):
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: row {row}: "), message
    assert reason in message, message
    assert exc.value.row == row


@pytest.mark.parametrize(
    ("line", "text", "reason"),
    [
        (4, "2021-01-01,12,14,11,13,100", "timestamp not after previous row"),
        (3, "2021-01-01,11,13,10,12,100", "timestamp not after previous row"),
        (3, "2021-01-02,11,13,10,nan,100", "missing close value"),
        (3, "2021-01-02,11,13,10,,100", "missing close value"),
        (3, "2021-01-02,11,abc,10,12,100", "non-numeric high value 'abc'"),
        (3, "2021-01-02,11,13,10,inf,100", "non-finite close value"),
        (3, "2021-01-02,-11,13,10,12,100", "non-positive open -11.0"),
        (4, "2021-01-03,0,14,0,13,100", "non-positive open 0.0"),
        (3, "2021-01-02,14,13,10,12,100", "high 13.0 < max(open, close) 14.0"),
        (3, "2021-01-02,11,13,10,9.5,100", "low 10.0 > min(open, close) 9.5"),
        (2, "2021-01-01,10,12,9,11,-5", "negative volume -5.0"),
        (3, "2021-13-45,11,13,10,12,100", "unparseable timestamp '2021-13-45'"),
        (3, "yesterday,11,13,10,12,100", "unparseable timestamp 'yesterday'"),
        (3, ",11,13,10,12,100", "missing timestamp"),
        (3, "1609545600,11,13,10,12,100", "unparseable timestamp '1609545600'"),
        (3, "2021-01-02,11,13,10,12,100,7", "expected 6 fields, saw 7"),
        (3, "", "empty row"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path: Path, line: int, text: str, reason: str) -> None:
    path = write_csv(tmp_path, with_row(line, text))
    with pytest.raises(DataError) as exc:
        load_bars(path)
    assert_row_error(exc, path, line, reason)


def test_first_offending_row_wins_over_check_order(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "2021-01-04,13,15,12,14,-1", "garbage,1,1,1,1,1"]
    rows[1] = "2021-01-02,11,13,10,12,-1"  # negative volume on line 3, bad time on line 6
    path = write_csv(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        load_bars(path)
    assert_row_error(exc, path, 3, "negative volume")


def test_rows_are_physical_lines_in_gzip_and_large_files(tmp_path: Path) -> None:
    series = gbm_bars(5000, seed=3)
    path = tmp_path / "big.csv.gz"
    save_bars(series, path)
    frame = pd.read_csv(path)
    frame.loc[4321, "low"] = frame.loc[4321, "high"] + 1  # data row 4322 = line 4323
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as exc:
        load_bars(path)
    assert_row_error(exc, path, 4323, "low ")


def test_trailing_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("\n".join([HEADER, *GOOD_ROWS]) + "\n\n\n")
    assert len(load_bars(path)) == 3


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("date,open,high,close,volume", "missing column(s) low"),
        ("date,open,close,volume,x,y", "missing column(s) high, low"),
        ("day,open,high,low,close,volume", "no time column"),
    ],
)
def test_missing_column_is_a_file_error(tmp_path: Path, header: str, reason: str) -> None:
    path = write_csv(tmp_path, GOOD_ROWS, header=header)
    with pytest.raises(DataError, match=re.escape(f"{path}: {reason}")):
        load_bars(path)


def test_file_level_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=re.escape(f"{missing}: file not found")):
        load_bars(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=re.escape(f"{empty}: empty file")):
        load_bars(empty)
    header_only = write_csv(tmp_path, [], name="header.csv")
    with pytest.raises(DataError, match=re.escape(f"{header_only}: no data rows")):
        load_bars(header_only)
    text = tmp_path / "bars.txt"
    text.write_text(HEADER)
    with pytest.raises(DataError, match="unsupported file type"):
        load_bars(text)
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        load_bars(folder)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=re.escape(f"{broken}: unreadable CSV")):
        load_bars(broken)


def test_parquet_rows_are_one_based_indices(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2021-01-01", periods=5, freq="h", tz="UTC"),
            "open": [10.0, 11, 12, 13, 14],
            "high": [12.0, 13, 14, 15, 16],
            "low": [9.0, 10, 11, 12, 13],
            "close": [11.0, 12, 13, 14, 15],
        }
    )
    frame.loc[3, "high"] = 1.0
    frame.to_parquet(path)
    with pytest.raises(DataError) as exc:
        load_bars(path)
    assert_row_error(exc, path, 4, "high 1.0 < max(open, close) 14.0")


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    series = gbm_bars(2000, seed=11, interval_ms=300_000)
    path = tmp_path / f"synth{suffix}"
    save_bars(series, path)
    loaded = load_bars(path, symbol="SYNTH")
    assert_same_bars(loaded, series)


def test_daily_csv_uses_date_column_and_round_trips(tmp_path: Path) -> None:
    series = gbm_bars(30, seed=2, interval_ms=DAY_MS, start_ms=1_700_000_000_000)
    path = tmp_path / "daily.csv"
    save_bars(series, path)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1].startswith("2023-11-14,")
    assert_same_bars(load_bars(path, symbol="SYNTH"), series)


def test_millisecond_times_round_trip(tmp_path: Path) -> None:
    series = gbm_bars(3, seed=2, interval_ms=250, start_ms=1_600_000_000_000)
    path = tmp_path / "fast.csv"
    save_bars(series, path)
    assert path.read_text().splitlines()[2].startswith("2020-09-13T12:26:40.250Z,")
    assert_same_bars(load_bars(path, symbol="SYNTH"), series)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("timestamp", [1609459200, 1609462800, 1609466400]),  # seconds
        ("open_time", [1609459200000, 1609462800000, 1609466400000]),  # milliseconds
        ("ts", [1609459200000000, 1609462800000000, 1609466400000000]),  # microseconds
        ("time", [1609459200000000000, 1609462800000000000, 1609466400000000000]),  # nanoseconds
        ("Timestamp", [1609459200.0, 1609462800.0, 1609466400.0]),  # float seconds
    ],
)
def test_epoch_time_columns(tmp_path: Path, column: str, values: list[float]) -> None:
    rows = [f"{v},{row.split(',', 1)[1]}" for v, row in zip(values, GOOD_ROWS, strict=True)]
    path = write_csv(tmp_path, rows, header=HEADER.replace("date", column))
    hour = 3_600_000
    assert load_bars(path).ts.tolist() == [1_609_459_200_000 + k * hour for k in range(3)]


def test_bad_value_in_epoch_column(tmp_path: Path) -> None:
    rows = ["1609459200,10,12,9,11,1", "1609462800,11,13,10,12,1", "noon,12,14,11,13,1"]
    path = write_csv(tmp_path, rows, header="timestamp,open,high,low,close,volume")
    with pytest.raises(DataError) as exc:
        load_bars(path)
    assert_row_error(exc, path, 4, "unparseable timestamp 'noon'")


def test_iso_strings_are_utc_with_or_without_zone(tmp_path: Path) -> None:
    rows = [
        "2021-01-01T00:00:00Z,10,12,9,11,1",
        "2021-01-01 01:00:00,11,13,10,12,1",
        "2021-01-01T04:00:00+02:00,12,14,11,13,1",
    ]
    path = write_csv(tmp_path, rows, header="DateTime,Open,High,Low,Close,Volume")
    hour = 3_600_000
    assert load_bars(path).ts.tolist() == [1_609_459_200_000 + k * hour for k in range(3)]


def test_volume_optional_and_extra_columns_ignored(tmp_path: Path) -> None:
    rows = [row.rsplit(",", 1)[0] + ",x" for row in GOOD_ROWS]
    path = write_csv(tmp_path, rows, header="Date,Open,High,Low,Close,Note")
    series = load_bars(path)
    assert series.volume.tolist() == [0.0, 0.0, 0.0]
    assert series.close.tolist() == [11.0, 12.0, 13.0]
    assert series.ts.dtype == np.int64
    assert series.close.dtype == np.float64


def test_parquet_datetime_forms(tmp_path: Path) -> None:
    times = pd.date_range("2021-01-01", periods=3, freq="D")
    prices = {"open": [10.0, 11, 12], "high": [12.0, 13, 14], "low": [9.0, 10, 11]}
    prices["close"] = [11.0, 12, 13]
    expected = [1_609_459_200_000 + k * DAY_MS for k in range(3)]
    naive = tmp_path / "naive.parquet"
    pd.DataFrame({"date": times, **prices}).to_parquet(naive)
    assert load_bars(naive).ts.tolist() == expected
    indexed = tmp_path / "indexed.parquet"
    pd.DataFrame(prices, index=times.tz_localize("UTC").rename("datetime")).to_parquet(indexed)
    assert load_bars(indexed).ts.tolist() == expected
    unnamed = tmp_path / "unnamed.parquet"
    pd.DataFrame(prices, index=times).to_parquet(unnamed)
    assert load_bars(unnamed).ts.tolist() == expected
    epoch = tmp_path / "epoch.parquet"
    pd.DataFrame({"open_time": [e // 1000 for e in expected], **prices}).to_parquet(epoch)
    assert load_bars(epoch).ts.tolist() == expected


def test_default_symbol_from_file_stem(tmp_path: Path) -> None:
    assert load_bars(write_csv(tmp_path, GOOD_ROWS, name="btc-usdt_1h.csv")).symbol == "BTCUSDT1H"
    path = tmp_path / "eth usdt.csv.gz"
    save_bars(load_bars(write_csv(tmp_path, GOOD_ROWS)), path)
    assert load_bars(path).symbol == "ETHUSDT"
    assert load_bars(path, symbol="XYZ").symbol == "XYZ"


def assert_same_bars(actual: BarSeries, expected: BarSeries) -> None:
    assert actual.symbol == expected.symbol
    for name in ("ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(actual.column(name), expected.column(name), err_msg=name)
