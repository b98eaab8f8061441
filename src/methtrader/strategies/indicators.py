"""Indicators computed two ways with identical results: vectorised over a whole series ahead of a
backtest, and incrementally bar by bar live. Each class implements both with the same float ops."""

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from methtrader.model import Bar, BarSeries

PRICE_COLUMNS = frozenset({"open", "high", "low", "close"})


class IndicatorStream(Protocol):
    def update(self, bar: Bar) -> float:
        """Feed the next bar; return the value at that bar (NaN while warming up)."""
        ...


class Indicator(Protocol):
    """`tick` is the instrument's price increment: prices are exact multiples of it, which lets
    sums run in exact integers (so exact ties stay ties); None means plain float arithmetic."""

    def vector(self, series: BarSeries, tick: float | None = None) -> np.ndarray: ...

    def stream(self, tick: float | None = None) -> IndicatorStream: ...


@dataclass(frozen=True)
class SMA:
    """Simple moving average as a difference of running sums. On price columns the sums are
    integers of ticks — exact, so two averages that are equal in decimal are equal as floats;
    otherwise float sums in the order np.cumsum adds them. The stream does the same operations."""

    period: int
    source: str = "close"

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"SMA period must be >= 1, got {self.period}")

    def _tick(self, tick: float | None) -> float | None:
        return tick if tick and self.source in PRICE_COLUMNS else None

    def vector(self, series: BarSeries, tick: float | None = None) -> np.ndarray:
        x = series.column(self.source)
        tick = self._tick(tick)
        csum = np.cumsum(np.rint(x / tick).astype(np.int64) if tick else x)
        out = np.full(len(x), np.nan)
        n = self.period
        if len(x) >= n:
            sums = csum[n - 1 :] - np.concatenate(([0], csum[:-n]))
            out[n - 1 :] = sums / n * tick if tick else sums / n
        return out

    def stream(self, tick: float | None = None) -> "_SMAStream":
        return _SMAStream(self.period, self.source, self._tick(tick))


class _SMAStream:
    def __init__(self, period: int, source: str, tick: float | None) -> None:
        self.period = period
        self.source = source
        self.tick = tick
        self.total: int | np.float64 = 0 if tick else np.float64(0.0)
        self.sums: deque[int | np.float64] = deque([self.total], maxlen=period + 1)

    def update(self, bar: Bar) -> float:
        value = getattr(bar, self.source)
        if self.tick:
            self.total = self.total + round(value / self.tick)
        else:
            self.total = self.total + np.float64(value)
        self.sums.append(self.total)
        if len(self.sums) <= self.period:
            return float("nan")
        window_sum = float(self.total - self.sums[0])
        return window_sum / self.period * self.tick if self.tick else window_sum / self.period


@dataclass(frozen=True)
class _RollingExtreme:
    period: int
    source: str

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"{type(self).__name__} period must be >= 1, got {self.period}")

    def _reduce(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vector(self, series: BarSeries, tick: float | None = None) -> np.ndarray:
        x = series.column(self.source)
        out = np.full(len(x), np.nan)
        if len(x) >= self.period:
            out[self.period - 1 :] = self._reduce(sliding_window_view(x, self.period))
        return out

    def stream(self, tick: float | None = None) -> "_WindowStream":
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

    def __init__(self, indicators: dict[str, Indicator], tick: float | None = None) -> None:
        self.streams = {name: ind.stream(tick) for name, ind in indicators.items()}
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


def vector_columns(
    indicators: dict[str, Indicator], series: BarSeries, tick: float | None = None
) -> dict[str, np.ndarray]:
    """Every indicator over the whole series, plus the bar columns, keyed by name."""
    columns = {name: getattr(series, name) for name in _BAR_FIELDS}
    columns.update({name: ind.vector(series, tick) for name, ind in indicators.items()})
    return columns
