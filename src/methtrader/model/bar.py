"""OHLCV bars: one `Bar` for event handlers, a `BarSeries` of numpy columns for the hot path."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MS = 1
SECOND_MS = 1000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
OHLCV_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar; `ts` is the bar's open time in Unix milliseconds (UTC), as Bybit's kline start."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class BarSeries:
    """Bars of one symbol as aligned float64 columns and int64 open times (ms), ascending."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> "BarSeries":
        """Columns from bars of one symbol, in the order given (ascending open times)."""
        if not bars:
            raise ValueError("no bars")
        columns = [np.array([getattr(b, name) for b in bars], dtype=float) for name in OHLCV_FIELDS]
        return cls(bars[0].symbol, np.array([b.ts for b in bars], dtype=np.int64), *columns)

    def __len__(self) -> int:
        return len(self.ts)

    def bar(self, i: int) -> Bar:
        return Bar(
            self.symbol,
            int(self.ts[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
        )

    def column(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> "BarSeries":
        """Bars with start <= ts < end; None leaves that side open."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts, start_ms, "left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts, end_ms, "left"))
        return self.take(slice(lo, hi))

    def take(self, index: slice | np.ndarray) -> "BarSeries":
        return BarSeries(
            self.symbol,
            self.ts[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume[index],
        )

    def with_symbol(self, symbol: str) -> "BarSeries":
        return BarSeries(symbol, self.ts, self.open, self.high, self.low, self.close, self.volume)

    @property
    def median_interval_ms(self) -> int:
        """Typical spacing between bars, used to annualise statistics."""
        if len(self) < 2:
            return DAY_MS
        return int(np.median(np.diff(self.ts)))
