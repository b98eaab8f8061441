"""Read and write OHLCV bar files (CSV, gzipped CSV, Parquet) as validated `BarSeries`.

Every backtest starts from a file; rejecting bad rows here, with the file and row in the
message, keeps silent data errors out of results.
"""

import re
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from methtrader.data.errors import DataError
from methtrader.model.bar import DAY_MS, SECOND_MS, BarSeries

TIME_COLUMNS = ("date", "datetime", "timestamp", "time", "ts", "open_time")
PRICE_COLUMNS = ("open", "high", "low", "close")
SUFFIXES = (".csv", ".csv.gz", ".parquet")

# An epoch number is read in the largest unit that keeps it at or after 1973-03-03:
# |v| < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds.
_EPOCH_LIMITS = np.array([1e11, 1e14, 1e17])
_MAX_ABS_MS = 1e15  # about year 33,600; anything larger is not a bar time
_TOKENIZE_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")

Check = tuple[np.ndarray, Callable[[int], str]]


def load_bars(path: str | PathLike[str], symbol: str | None = None) -> BarSeries:
    """Load and validate bars from `.csv`, `.csv.gz` or `.parquet`; raise DataError on bad data.

    The symbol defaults to the file stem upper-cased with non-alphanumerics removed.
    """
    path = Path(path)
    kind = _file_kind(path)
    if not path.exists():
        raise DataError("file not found", source=path)
    if not path.is_file():
        raise DataError("not a regular file", source=path)
    frame, first_row = _read_csv(path) if kind == "csv" else _read_parquet(path)
    return _to_series(frame, first_row, path, symbol or default_symbol(path))


def save_bars(series: BarSeries, path: str | PathLike[str]) -> None:
    """Write bars to CSV (`.csv`, `.csv.gz`) or Parquet, in a form `load_bars` reads back exactly.

    CSV uses the shipped layout: `date` (YYYY-MM-DD) when every bar starts at a UTC midnight,
    else `datetime` (ISO 8601 with Z); Parquet stores `datetime` as a UTC millisecond timestamp.
    """
    path = Path(path)
    kind = _file_kind(path)
    ts = np.asarray(series.ts, dtype=np.int64)
    values = {name: np.asarray(series.column(name), dtype=np.float64) for name in (*PRICE_COLUMNS, "volume")}
    if kind == "parquet":
        times = pd.to_datetime(ts, unit="ms", utc=True)
        pd.DataFrame({"datetime": times, **values}).to_parquet(path, index=False)
        return
    daily = len(ts) > 0 and bool(np.all(ts % DAY_MS == 0))
    column = "date" if daily else "datetime"
    pd.DataFrame({column: format_times(ts), **values}).to_csv(path, index=False)


def default_symbol(path: str | PathLike[str]) -> str:
    """The file name without its data suffix, upper-cased, keeping only letters and digits."""
    name = Path(path).name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9]", "", name).upper() or "UNNAMED"


def format_times(ts: np.ndarray) -> np.ndarray:
    """ISO strings for Unix-ms times: dates at UTC midnights, else seconds (or ms) with a Z."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) and np.all(ts % DAY_MS == 0):
        return np.datetime_as_string(ts.astype("datetime64[ms]"), unit="D")
    unit = "s" if np.all(ts % SECOND_MS == 0) else "ms"
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[ms]"), unit=unit), "Z")


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError("unsupported file type (expected .csv, .csv.gz or .parquet)", source=path)


def _read_csv(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as a frame whose position i is physical line i + 2 (blank lines kept as rows)."""
    try:
        frame = pd.read_csv(path, skip_blank_lines=False, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError("empty file", source=path) from None
    except pd.errors.ParserError as exc:
        match = _TOKENIZE_ERROR.search(str(exc))
        if match:
            expected, line, saw = match.groups()
            reason = f"expected {expected} fields, saw {saw}"
            raise DataError(reason, source=path, row=int(line)) from None
        raise DataError(f"unreadable CSV ({exc})", source=path) from None
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"unreadable CSV ({exc})", source=path) from None
    blank = frame.isna().all(axis=1).to_numpy()
    filled = np.flatnonzero(~blank)
    end = int(filled[-1]) + 1 if filled.size else 0
    return frame.iloc[:end], 2


def _read_parquet(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as a frame whose position i is row i + 1; a named time index becomes a column."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"unreadable Parquet ({exc})", source=path) from None
    has_time = any(str(c).strip().lower() in TIME_COLUMNS for c in frame.columns)
    time_index = str(frame.index.name).strip().lower() in TIME_COLUMNS
    if not has_time and (time_index or isinstance(frame.index, pd.DatetimeIndex)):
        frame = frame.rename_axis(frame.index.name or "datetime").reset_index()
    return frame.reset_index(drop=True), 1


def _to_series(frame: pd.DataFrame, first_row: int, path: Path, symbol: str) -> BarSeries:
    columns: dict[str, object] = {}
    for column in frame.columns:
        columns.setdefault(str(column).strip().lower(), column)
    found = ", ".join(str(c) for c in frame.columns)
    time_key = next((name for name in TIME_COLUMNS if name in columns), None)
    if time_key is None:
        expected = ", ".join(TIME_COLUMNS)
        raise DataError(f"no time column (expected one of {expected}; found {found})", source=path)
    missing = [name for name in PRICE_COLUMNS if name not in columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (found {found})", source=path)
    if len(frame) == 0:
        raise DataError("no data rows", source=path)

    ts, time_checks = _parse_times(frame[columns[time_key]])
    prices: dict[str, np.ndarray] = {}
    value_checks: list[Check] = []
    for name in PRICE_COLUMNS:
        prices[name], check = _parse_numbers(frame[columns[name]], name)
        value_checks.append(check)
    if "volume" in columns:
        volume, check = _parse_numbers(frame[columns["volume"]], "volume")
        value_checks.append(check)
    else:
        volume = np.zeros(len(frame))

    opens, highs, lows, closes = (prices[name] for name in PRICE_COLUMNS)
    body_high = np.maximum(opens, closes)
    body_low = np.minimum(opens, closes)
    not_after = np.concatenate(([False], ts[1:] <= ts[:-1]))
    blank = frame.isna().all(axis=1).to_numpy()
    checks: list[Check] = [
        (blank, lambda i: "empty row"),
        *time_checks,
        (
            not_after,
            lambda i: (
                "timestamp not after previous row "
                f"({format_times(ts[i : i + 1])[0]}, previous {format_times(ts[i - 1 : i])[0]})"
            ),
        ),
        *value_checks,
        *(_non_positive(prices[name], name) for name in PRICE_COLUMNS),
        (
            highs < body_high,
            lambda i: f"high {float(highs[i])!r} < max(open, close) {float(body_high[i])!r}",
        ),
        (
            lows > body_low,
            lambda i: f"low {float(lows[i])!r} > min(open, close) {float(body_low[i])!r}",
        ),
        (volume < 0, lambda i: f"negative volume {float(volume[i])!r}"),
    ]
    _raise_first(checks, first_row, path)
    return BarSeries(symbol, ts, opens, highs, lows, closes, volume)


def _raise_first(checks: list[Check], first_row: int, path: Path) -> None:
    """Raise DataError for the earliest flagged row; on a tie the earlier check wins."""
    worst: tuple[int, Callable[[int], str]] | None = None
    for mask, describe in checks:
        if mask.any():
            index = int(np.argmax(mask))
            if worst is None or index < worst[0]:
                worst = (index, describe)
    if worst is not None:
        index, describe = worst
        raise DataError(describe(index), source=path, row=index + first_row)


def _non_positive(values: np.ndarray, name: str) -> Check:
    return values <= 0, lambda i: f"non-positive {name} {float(values[i])!r}"


def _parse_numbers(column: pd.Series, name: str) -> tuple[np.ndarray, Check]:
    """Float64 values of a column and a check flagging empty, non-numeric or non-finite cells."""
    absent = column.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.ascontiguousarray(values)
    invalid = ~np.isfinite(values)

    def describe(i: int) -> str:
        if absent[i]:
            return f"missing {name} value"
        raw = column.iloc[i]
        if np.isnan(values[i]) and isinstance(raw, str):
            return f"non-numeric {name} value {raw!r}"
        return f"non-finite {name} value {raw!r}"

    return values, (invalid, describe)


def _parse_times(column: pd.Series) -> tuple[np.ndarray, list[Check]]:
    """Unix-ms open times (int64) from datetimes, ISO strings or epoch numbers, with checks.

    A text column is read as epoch numbers if its first value is a number, else as ISO 8601.
    """
    absent = column.isna().to_numpy()
    missing: Check = (absent, lambda i: "missing timestamp")
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        return _datetimes_to_ms(column), [missing]
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        numbers = column
    else:
        numbers = pd.to_numeric(column, errors="coerce")
    present = np.flatnonzero(~absent)
    if present.size == 0 or pd.notna(numbers.iloc[present[0]]):  # the first value picks the form
        ms, bad = _epoch_to_ms(numbers, absent)
    else:
        parsed = pd.to_datetime(column, format="ISO8601", utc=True, errors="coerce")
        ms = _datetimes_to_ms(parsed)
        bad = parsed.isna().to_numpy() & ~absent
    unparseable: Check = (bad, lambda i: f"unparseable timestamp {column.iloc[i]!r}")
    return ms, [missing, unparseable]


def _datetimes_to_ms(column: pd.Series) -> np.ndarray:
    """Unix ms of a datetime column; naive values are taken as UTC, NaT becomes 0."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert(None)
    stamps = column.to_numpy().astype("datetime64[ms]")
    ms = stamps.view(np.int64).copy()
    ms[np.isnat(stamps)] = 0
    return ms


def _epoch_to_ms(numbers: pd.Series, absent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unix ms of epoch numbers, each value's unit chosen by magnitude; also flags bad values."""
    if pd.api.types.is_integer_dtype(numbers.dtype):
        raw = numbers.to_numpy(dtype=np.int64)
        tier = np.searchsorted(_EPOCH_LIMITS, np.abs(raw.astype(np.float64)), side="right")
        ms = np.select([tier == 0, tier == 1, tier == 2], [raw * 1000, raw, raw // 1000], raw // 1_000_000)
        return ms.astype(np.int64), np.zeros(len(raw), dtype=bool)
    raw = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    tier = np.searchsorted(_EPOCH_LIMITS, np.abs(raw), side="right")
    scaled = raw * np.array([1000.0, 1.0, 1e-3, 1e-6])[np.minimum(tier, 3)]
    bad = ~(np.abs(scaled) < _MAX_ABS_MS) & ~absent
    ms = np.where(bad | absent, 0.0, np.floor(scaled + 0.5)).astype(np.int64)
    return ms, bad
