"""Features of a bar series for models, pure numpy and without look-ahead.

The feature at bar t uses bars up to and including t (its close) and nothing later. Every feature
has a finite lookback L (it reads bars t-L..t), and each value is computed with element-wise
operations in a fixed order (window sums add x[t], x[t-1], ... one lag at a time), so computing
the features over a whole series (backtest) or over just the last L+1 bars (live) gives the same
floats. The training label — whether the next bar's close is higher — is never a feature.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from methtrader.model import BarSeries

Columns = Mapping[str, np.ndarray]
RAW_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


class FeatureError(ValueError):
    """Unknown feature name or unusable input: a one-line message for the user."""


def _window_sum(x: np.ndarray, n: int) -> np.ndarray:
    """out[t] = x[t] + x[t-1] + ... + x[t-n+1], added in that order; NaN for t < n-1."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        acc = x[n - 1 :].copy()
        for k in range(1, n):
            acc = acc + x[n - 1 - k : len(x) - k]
        out[n - 1 :] = acc
    return out


def _window_mean_std(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population standard deviation over the last n values."""
    mean = _window_sum(x, n) / n
    sq = np.full(len(x), np.nan)
    if len(x) >= n:
        m = mean[n - 1 :]
        acc = (x[n - 1 :] - m) ** 2
        for k in range(1, n):
            acc = acc + (x[n - 1 - k : len(x) - k] - m) ** 2
        sq[n - 1 :] = acc
    return mean, np.sqrt(sq / n)


def _lagged(x: np.ndarray, k: int) -> np.ndarray:
    """x shifted k bars later: out[t] = x[t-k], NaN before."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def log_return(close: np.ndarray, k: int) -> np.ndarray:
    """log(close[t] / close[t-k])."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(close / _lagged(close, k))


def volatility(close: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation of the last n one-bar log returns."""
    return _window_mean_std(log_return(close, 1), n)[1]


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Relative strength index over the last n price changes with simple sums (Cutler's RSI,
    finite lookback unlike Wilder's smoothing): 100 * gains / (gains + losses), 50 when flat."""
    change = close - _lagged(close, 1)
    gains = _window_sum(np.where(change > 0, change, 0.0), n)
    losses = _window_sum(np.where(change < 0, -change, 0.0), n)
    total = gains + losses
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(total > 0, 100.0 * gains / total, 50.0)
    # the first change is at bar 1, so bars before n have an incomplete window
    value[: min(n, len(value))] = np.nan
    return value


def zscore(x: np.ndarray, n: int) -> np.ndarray:
    """(x[t] - mean) / std over the last n values (t included); 0 where the window is constant."""
    mean, std = _window_mean_std(x, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (x - mean) / std, np.where(np.isnan(std), np.nan, 0.0))


def sma_ratio(close: np.ndarray, n: int) -> np.ndarray:
    """close[t] / SMA(n)[t] - 1."""
    return close / (_window_sum(close, n) / n) - 1.0


@dataclass(frozen=True)
class Feature:
    name: str
    lookback: int  # reads bars t-lookback .. t
    compute: Callable[[Columns], np.ndarray]
    description: str


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("ret_1", 1, lambda c: log_return(c["close"], 1), "log return over 1 bar"),
        Feature("ret_5", 5, lambda c: log_return(c["close"], 5), "log return over 5 bars"),
        Feature("ret_20", 20, lambda c: log_return(c["close"], 20), "log return over 20 bars"),
        Feature("vol_20", 20, lambda c: volatility(c["close"], 20), "std of 1-bar log returns, 20 bars"),
        Feature("rsi_14", 14, lambda c: rsi(c["close"], 14), "RSI over 14 changes (simple sums)"),
        Feature("volume_z_20", 19, lambda c: zscore(c["volume"], 20), "volume z-score over 20 bars"),
        Feature("range_1", 0, lambda c: (c["high"] - c["low"]) / c["close"], "(high - low) / close"),
        Feature("sma_ratio_20", 19, lambda c: sma_ratio(c["close"], 20), "close / SMA(20) - 1"),
    )
}
DEFAULT_FEATURES: tuple[str, ...] = tuple(FEATURES)


def parse_features(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`ret_1,rsi_14` (or a sequence of names) → validated names in the given order; None → all."""
    if text is None:
        return DEFAULT_FEATURES
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise FeatureError("no feature names given")
    for name in names:
        if name not in FEATURES:
            raise FeatureError(f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
    if len(set(names)) != len(names):
        raise FeatureError(f"duplicate feature names in {','.join(names)}")
    return tuple(names)


def lookback(names: Sequence[str]) -> int:
    """Bars before t that the features at t read: a live window holds lookback + 1 bars."""
    return max(FEATURES[n].lookback for n in names)


def series_columns(series: BarSeries) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(getattr(series, name)) for name in RAW_COLUMNS}


def feature_matrix(columns: Columns, names: Sequence[str]) -> np.ndarray:
    """Features over aligned OHLCV columns: shape (bars, len(names)), NaN while warming up."""
    cols = {k: np.ascontiguousarray(v, dtype=float) for k, v in columns.items() if k != "ts"}
    n = len(cols["close"])
    out = np.empty((n, len(names)))
    for j, name in enumerate(names):
        out[:, j] = FEATURES[name].compute(cols)
    return out


def build_features(series: BarSeries, names: Sequence[str] = DEFAULT_FEATURES) -> np.ndarray:
    return feature_matrix(series_columns(series), names)


def next_bar_label(close: np.ndarray) -> np.ndarray:
    """Training target: 1.0 when the next bar's close is above this one's, else 0.0 (a flat bar
    counts as not up); NaN for the last bar, which has no next. Never used as a feature."""
    label = np.full(len(close), np.nan)
    if len(close) > 1:
        label[:-1] = (close[1:] > close[:-1]).astype(float)
    return label


def training_set(
    series: BarSeries, names: Sequence[str] = DEFAULT_FEATURES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, rows): the bars whose features and label are all defined, in time order."""
    x = build_features(series, names)
    y = next_bar_label(np.asarray(series.close, dtype=float))
    rows = np.flatnonzero(np.isfinite(x).all(axis=1) & ~np.isnan(y))
    return x[rows], y[rows].astype(np.int64), rows


def raw_window(columns: Columns, index: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The raw bars the features at `index` were computed from (index-lookback .. index)."""
    start = max(0, index - lookback(names))
    return {k: np.asarray(columns[k][start : index + 1]).copy() for k in RAW_COLUMNS if k in columns}
