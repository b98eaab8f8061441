"""Market-data results from the replayed bars: klines (resampled on request), tickers, quotes.

Only bars up to the replay's current index are visible: the future is never leaked. Klines are
the closed bars; tickers may show the price the bar now forming trades at (`last`).
"""

from decimal import Decimal

import numpy as np

from methtrader.exchange.sim.errors import PARAMS, BybitError
from methtrader.exchange.sim.payloads import fmt, fmt_step
from methtrader.model import BarSeries, Instrument
from methtrader.model.bar import DAY_MS

MINUTE_MS = 60_000
INTERVALS = {
    **{str(m): m * MINUTE_MS for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": DAY_MS,
    "W": 7 * DAY_MS,
}
WEEK_OFFSET_MS = 4 * DAY_MS  # 1970-01-01 was a Thursday; Bybit's weeks start on Monday


def interval_ms(interval: str, base_ms: int) -> int:
    iv = INTERVALS.get(interval)
    if iv is None or iv < base_ms or iv % base_ms:
        raise BybitError(PARAMS, "Invalid period!")
    return iv


def klines(
    series: BarSeries,
    upto: int,
    interval: str,
    base_ms: int,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[list[str]]:
    """Bybit's kline rows [start, open, high, low, close, volume, turnover], newest first."""
    iv = interval_ms(interval, base_ms)
    ts = series.ts[: upto + 1]
    offset = WEEK_OFFSET_MS if interval == "W" else 0
    buckets = (ts - offset) // iv * iv + offset
    starts, first = np.unique(buckets, return_index=True)
    last = np.append(first[1:], len(ts)) - 1
    keep = np.ones(len(starts), dtype=bool)
    if start is not None:
        keep &= starts >= start
    if end is not None:
        keep &= starts <= end
    idx = np.flatnonzero(keep)[::-1][:limit]
    rows = []
    for k in idx:
        a, b = int(first[k]), int(last[k]) + 1
        volume = float(series.volume[a:b].sum())
        close = float(series.close[b - 1])
        rows.append(
            [
                str(int(starts[k])),
                fmt(float(series.open[a])),
                fmt(float(series.high[a:b].max())),
                fmt(float(series.low[a:b].min())),
                fmt(close),
                fmt(volume),
                fmt(Decimal(repr(volume)) * Decimal(repr(close))),
            ]
        )
    return rows


def quote(inst: Instrument, close: float) -> tuple[Decimal, Decimal]:
    """A synthetic best bid/ask one tick either side of the last price."""
    last = inst.round_price(close)
    return last - inst.tick_size, last + inst.tick_size


def ticker(
    series: BarSeries, upto: int, inst: Instrument, funding_rate: Decimal, last: float | None = None
) -> dict[str, object]:
    """Bar `upto` and the day before it; `last` (default: its close) is the price now, which the
    last, mark, index and quote prices show and the day's high and low include."""
    ts = int(series.ts[upto])
    day = int(np.searchsorted(series.ts, ts - DAY_MS + 1, "left"))
    window = slice(day, upto + 1)
    close = float(series.close[upto]) if last is None else last
    tick = inst.tick_size
    last = inst.round_price(close)
    prev24 = inst.round_price(float(series.open[day]))
    prev1h = inst.round_price(float(series.open[int(np.searchsorted(series.ts, ts - 3_600_000 + 1))]))
    volume = float(series.volume[window].sum())
    turnover = float((series.volume[window] * series.close[window]).sum())
    bid, ask = quote(inst, close)
    funding_ms = 8 * 3_600_000
    return {
        "symbol": inst.symbol,
        "lastPrice": fmt_step(last, tick),
        "indexPrice": fmt_step(last, tick),
        "markPrice": fmt_step(last, tick),
        "prevPrice24h": fmt_step(prev24, tick),
        "price24hPcnt": fmt(((last - prev24) / prev24).quantize(Decimal("0.000001"))) if prev24 else "0",
        "highPrice24h": fmt_step(inst.round_price(max(float(series.high[window].max()), close)), tick),
        "lowPrice24h": fmt_step(inst.round_price(min(float(series.low[window].min()), close)), tick),
        "prevPrice1h": fmt_step(prev1h, tick),
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": fmt(round(turnover, 4)),
        "volume24h": fmt(round(volume, 3)),
        "fundingRate": fmt(funding_rate),
        "nextFundingTime": str((ts // funding_ms + 1) * funding_ms),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": fmt_step(bid, tick),
        "ask1Price": fmt_step(ask, tick),
        "bid1Size": "1",
        "basis": "",
    }
