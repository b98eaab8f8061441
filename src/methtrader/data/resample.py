"""Aggregate bars into coarser, epoch-aligned UTC buckets ("5m", "1h", "1d", ...).

Strategies often want a slower timeframe than the data file; aggregating locally avoids shipping
every timeframe and keeps bucket boundaries identical to the exchange's kline boundaries.
"""

import re

import numpy as np

from methtrader.model.bar import BarSeries

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RULE = re.compile(r"([1-9][0-9]*)([smhd])")
ACCEPTED_RULES = "<positive integer><unit> with unit s, m, h or d, e.g. 5m, 15m, 1h, 4h, 1d"


def rule_to_ms(rule: str) -> int:
    """Length of a rule such as "15m" in milliseconds; ValueError says which forms are accepted."""
    match = _RULE.fullmatch(rule.strip()) if isinstance(rule, str) else None
    if match is None:
        raise ValueError(f"unknown resample rule {rule!r} (accepted: {ACCEPTED_RULES})")
    count, unit = match.groups()
    return int(count) * _UNIT_MS[unit]


def resample(series: BarSeries, rule: str) -> BarSeries:
    """Bars aggregated into buckets starting at multiples of `rule` since the epoch (UTC).

    open=first, high=max, low=min, close=last, volume=sum, ts=bucket start; empty buckets are
    dropped. The rule must be a whole multiple of the input's typical bar spacing.
    """
    interval = rule_to_ms(rule)
    ts = np.asarray(series.ts, dtype=np.int64)
    if len(ts) == 0:
        return series.take(slice(0, 0))
    if np.any(ts[1:] <= ts[:-1]):
        raise ValueError(f"{series.symbol}: bar times must be strictly ascending to resample")
    spacing = series.median_interval_ms
    if len(ts) > 1 and interval % spacing != 0:
        raise ValueError(
            f"cannot resample {series.symbol} bars spaced {spacing} ms into {rule!r} "
            f"({interval} ms): the rule must be a whole multiple of the bar spacing"
        )
    bucket = ts - ts % interval
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.append(starts[1:], len(ts)) - 1
    return BarSeries(
        series.symbol,
        bucket[starts],
        np.asarray(series.open, dtype=np.float64)[starts],
        np.maximum.reduceat(np.asarray(series.high, dtype=np.float64), starts),
        np.minimum.reduceat(np.asarray(series.low, dtype=np.float64), starts),
        np.asarray(series.close, dtype=np.float64)[ends],
        np.add.reduceat(np.asarray(series.volume, dtype=np.float64), starts),
    )
