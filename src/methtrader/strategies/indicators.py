"""Indicators computed two ways with identical results: vectorised over a whole series ahead of a
backtest, and incrementally bar by bar live. Each class implements both with the same float ops."""

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from methtrader.model import Bar, BarSeries


class IndicatorStream(Protocol):
    def update(self, bar: Bar) -> float:
        """Feed the next bar; return the value at that bar (NaN while warming up)."""
        ...


class Indicator(Protocol):
    def vector(self, series: BarSeries) -> np.ndarray: ...

    def stream(self) -> IndicatorStream: ...


@dataclass(frozen=True)
class SMA:
    """Simple moving average as a difference of running sums: np.cumsum adds left to right, and
    the stream adds in the same order, so both give bit-identical values."""

    period: int
    source: str = "close"

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"SMA period must be >= 1, got {self.period}")

    def vector(self, series: BarSeries) -> np.ndarray:
        x = series.column(self.source)
        csum = np.cumsum(x)
        out = np.full(len(x), np.nan)
        n = self.period
        if len(x) >= n:
            out[n - 1] = csum[n - 1] / n
            out[n:] = (csum[n:] - csum[:-n]) / n
        return out

    def stream(self) -> "_SMAStream":
        return _SMAStream(self.period, self.source)


class _SMAStream:
    def __init__(self, period: int, source: str) -> None:
        self.period = period
        self.source = source
        self.total = np.float64(0.0)
        self.sums: deque[np.float64] = deque(maxlen=period + 1)

    def update(self, bar: Bar) -> float:
        self.total = self.total + np.float64(getattr(bar, self.source))
        self.sums.append(self.total)
        n = self.period
        if len(self.sums) <= n:
            return float(self.total / n) if len(self.sums) == n else float("nan")
        return float((self.total - self.sums[0]) / n)


@dataclass(frozen=True)
class _RollingExtreme:
    period: int
    source: str

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"{type(self).__name__} period must be >= 1, got {self.period}")

    def _reduce(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vector(self, series: BarSeries) -> np.ndarray:
        x = series.column(self.source)
        out = np.full(len(x), np.nan)
        if len(x) >= self.period:
            out[self.period - 1 :] = self._reduce(sliding_window_view(x, self.period))
        return out

    def stream(self) -> "_WindowStream":
        return _WindowStream(self)


class Highest(_RollingExtreme):
    """Highest value of `source` over the last `period` bars, the current one included."""

    def __init__(self, period: int, source: str = "high") -> None:
        super().__init__(period, source)

    def _reduce(self, windows: np.ndarray) -> np.ndarray:
        return windows.max(axis=1)


class Lowest(_RollingExtreme):
    """Lowest value of `source` over the last `period` bars, the current one included."""

    def __init__(self, period: int, source: str = "low") -> None:
        super().__init__(period, source)

    def _reduce(self, windows: np.ndarray) -> np.ndarray:
        return windows.min(axis=1)


class _WindowStream:
    def __init__(self, spec: _RollingExtreme) -> None:
        self.spec = spec
        self.window: deque[float] = deque(maxlen=spec.period)

    def update(self, bar: Bar) -> float:
        self.window.append(getattr(bar, self.spec.source))
        if len(self.window) < self.spec.period:
            return float("nan")
        return float(self.spec._reduce(np.asarray(self.window)[None, :])[0])


class Frame:
    """Indicator values by attribute (`x.fast`), and the previous bar's through `x.prev.fast`.

    Backed by whole arrays it yields arrays (vectorised signals); at one index it yields floats.
    A signal written with numpy operations therefore runs unchanged in both modes.
    """

    __slots__ = ("_columns", "_index", "_shift")

    def __init__(self, columns: dict[str, np.ndarray], index: int | None, shift: int = 0) -> None:
        self._columns = columns
        self._index = index
        self._shift = shift

    def __getattr__(self, name: str) -> float | np.ndarray:
        try:
            column = self._columns[name]
        except KeyError:
            raise AttributeError(f"no indicator or column named {name!r}") from None
        if self._index is None:
            if not self._shift:
                return column
            shifted = np.empty_like(column)
            shifted[: self._shift] = np.nan
            shifted[self._shift :] = column[: -self._shift]
            return shifted
        i = self._index - self._shift
        return float(column[i]) if i >= 0 else float("nan")

    @property
    def prev(self) -> "Frame":
        return Frame(self._columns, self._index, self._shift + 1)


class StreamFrames:
    """Live indicator state of one symbol: streams fed bar by bar, the last two values kept."""

    def __init__(self, indicators: dict[str, Indicator]) -> None:
        self.streams = {name: ind.stream() for name, ind in indicators.items()}
        self.columns: dict[str, np.ndarray] = {
            name: np.full(2, np.nan) for name in [*indicators, *_BAR_FIELDS]
        }

    def update(self, bar: Bar) -> Frame:
        for name, column in self.columns.items():
            column[0] = column[1]
            stream = self.streams.get(name)
            column[1] = stream.update(bar) if stream is not None else getattr(bar, name)
        return Frame(self.columns, 1)


_BAR_FIELDS = ("open", "high", "low", "close", "volume")


def vector_columns(indicators: dict[str, Indicator], series: BarSeries) -> dict[str, np.ndarray]:
    """Every indicator over the whole series, plus the bar columns, keyed by name."""
    columns = {name: getattr(series, name) for name in _BAR_FIELDS}
    columns.update({name: ind.vector(series) for name, ind in indicators.items()})
    return columns
