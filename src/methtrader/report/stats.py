"""Performance statistics of a backtest: return, risk, drawdown and trade metrics as plain numbers,
each from a small pure function on numpy arrays so it can be checked by hand.

Annualisation uses the *observed* bars per year, (number of bars − 1) / calendar years spanned
(365.25-day years), not 365.25 days / `bar_interval_ms`. The latter assumes a 24/7 calendar: right
for crypto but it overstates by ~45 % for daily stock-index data, whose weekends and holidays are
missing from the timeline. The observed rate equals the nominal one for gap-free 24/7 data and is
the real trading-day count for equities, so one rule serves both.

Returns are simple per-bar returns of the equity curve; Sharpe and Sortino use a zero risk-free
rate and target. Equity is measured from the first bar's close, so `total_return` and `cagr` are
those of the curve (a fee charged before the first close is not in them; `initial_cash` is reported
alongside).
"""

from collections.abc import Sequence
from math import isfinite, sqrt

import numpy as np

from methtrader.engine.result import BacktestResult
from methtrader.report.isotime import iso_utc
from methtrader.report.trades import RoundTrip, round_trips

MS_PER_DAY = 86_400_000
MS_PER_YEAR = 365.25 * MS_PER_DAY

Stats = dict[str, float | int | str | None]


def simple_returns(equity: np.ndarray) -> np.ndarray:
    """Per-bar simple returns equity[i] / equity[i-1] − 1 (length n − 1).

    A step from non-positive equity has no defined return and counts as 0 (a wiped-out account).
    """
    eq = np.asarray(equity, dtype=float)
    if eq.size < 2:
        return np.zeros(0)
    prev = eq[:-1]
    out = np.zeros(prev.size)
    np.divide(eq[1:], prev, out=out, where=prev > 0)
    return np.where(prev > 0, out - 1.0, 0.0)


def total_return(equity: np.ndarray) -> float | None:
    """Last equity over first, minus one; None without a positive starting equity.

    The headline growth of the curve, undefined when there is nothing to grow from.
    """
    eq = np.asarray(equity, dtype=float)
    if eq.size == 0 or eq[0] <= 0:
        return None
    return float(eq[-1] / eq[0] - 1.0)


def years_spanned(ts: np.ndarray) -> float:
    """Calendar years from the first to the last timestamp (Unix ms), in 365.25-day years.

    The time base of CAGR and of the observed bars-per-year rate.
    """
    t = np.asarray(ts, dtype=np.int64)
    return float(t[-1] - t[0]) / MS_PER_YEAR if t.size >= 2 else 0.0


def observed_bars_per_year(ts: np.ndarray) -> float | None:
    """(n − 1) bar steps divided by the years spanned; None when no time elapses.

    Annualises correctly for 24/7 crypto and for equities that skip weekends alike.
    """
    years = years_spanned(ts)
    return (len(ts) - 1) / years if years > 0 else None


def cagr(equity: np.ndarray, ts: np.ndarray) -> float | None:
    """Compound annual growth rate over the calendar time between the first and last bar.

    (end / start) ** (1 / years) − 1; −1 when equity ends at or below zero, None when undefined.
    """
    eq = np.asarray(equity, dtype=float)
    years = years_spanned(ts)
    if eq.size < 2 or years <= 0 or eq[0] <= 0:
        return None
    if eq[-1] <= 0:
        return -1.0
    return float((eq[-1] / eq[0]) ** (1.0 / years) - 1.0)


def annual_volatility(returns: np.ndarray, bars_per_year: float | None) -> float | None:
    """Sample standard deviation (ddof=1) of per-bar returns × sqrt(bars per year).

    None with fewer than two returns, where a sample deviation does not exist.
    """
    r = np.asarray(returns, dtype=float)
    if r.size < 2 or bars_per_year is None:
        return None
    return float(np.std(r, ddof=1) * sqrt(bars_per_year))


def sharpe_ratio(returns: np.ndarray, bars_per_year: float | None) -> float | None:
    """mean / std (ddof=1) of per-bar returns × sqrt(bars per year), risk-free rate 0.

    None when the deviation is zero (constant equity) or undefined, instead of ±inf or NaN.
    """
    r = np.asarray(returns, dtype=float)
    if r.size < 2 or bars_per_year is None:
        return None
    std = float(np.std(r, ddof=1))
    if std == 0 or not isfinite(std):
        return None
    return float(np.mean(r)) / std * sqrt(bars_per_year)


def sortino_ratio(returns: np.ndarray, bars_per_year: float | None) -> float | None:
    """mean / downside deviation × sqrt(bars per year), with downside sqrt(mean(min(r, 0)²)).

    The mean runs over all returns (target 0); None when no return is negative.
    """
    r = np.asarray(returns, dtype=float)
    if r.size == 0 or bars_per_year is None:
        return None
    downside = sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0 or not isfinite(downside):
        return None
    return float(np.mean(r)) / downside * sqrt(bars_per_year)


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at every bar: equity / peak − 1, always <= 0.

    Bars whose running peak is not positive have no defined drawdown and read 0.
    """
    eq = np.asarray(equity, dtype=float)
    if eq.size == 0:
        return np.zeros(0)
    peak = np.maximum.accumulate(eq)
    out = np.zeros(eq.size)
    np.divide(eq, peak, out=out, where=peak > 0)
    return np.where(peak > 0, np.minimum(out - 1.0, 0.0), 0.0)


def max_drawdown(equity: np.ndarray) -> float | None:
    """Deepest drawdown as a negative fraction (−0.25 means 25 % below the peak), 0 if none.

    None for an empty curve.
    """
    dd = drawdown_series(equity)
    return float(dd.min()) if dd.size else None


def max_drawdown_duration(equity: np.ndarray, ts: np.ndarray) -> tuple[int, float]:
    """Longest time under water, as (bars, days), each maximised on its own.

    An episode runs from the peak bar to the bar that regains the peak (equity >= peak), or to
    the last bar if it never does. Bars and days can come from different episodes on a timeline
    with gaps.
    """
    eq = np.asarray(equity, dtype=float)
    t = np.asarray(ts, dtype=np.int64)
    if eq.size < 2:
        return 0, 0.0
    idx = np.arange(eq.size)
    at_peak = eq >= np.maximum.accumulate(eq)
    peak_idx = np.maximum.accumulate(np.where(at_peak, idx, 0))
    start = peak_idx.copy()
    # A bar that regains the peak closes the episode begun at the previous bar's peak.
    recovering = at_peak[1:] & ~at_peak[:-1]
    start[1:][recovering] = peak_idx[:-1][recovering]
    in_episode = ~at_peak
    in_episode[1:] |= recovering
    if not in_episode.any():
        return 0, 0.0
    bars = int((idx - start)[in_episode].max())
    days = float((t - t[start])[in_episode].max()) / MS_PER_DAY
    return bars, days


def exposure(gross_exposure: np.ndarray) -> float | None:
    """Fraction of bars that end with any position held (gross exposure > 0).

    How much of the time the capital is at risk; None for an empty timeline.
    """
    g = np.asarray(gross_exposure, dtype=float)
    return float(np.mean(g > 0)) if g.size else None


def win_rate(pnls: np.ndarray) -> float | None:
    """Share of closed trades with pnl > 0 (break-even counts as not winning).

    None without closed trades.
    """
    p = np.asarray(pnls, dtype=float)
    return float(np.mean(p > 0)) if p.size else None


def profit_factor(pnls: np.ndarray) -> float | None:
    """Gross profit / gross loss of closed trades.

    None when no trade lost (the ratio would be infinite or 0/0).
    """
    p = np.asarray(pnls, dtype=float)
    gross_loss = -float(p[p < 0].sum())
    if gross_loss <= 0:
        return None
    return float(p[p > 0].sum()) / gross_loss


def _closed_pnls(trades: Sequence[RoundTrip]) -> np.ndarray:
    return np.array([float(t.pnl) for t in trades if not t.is_open], dtype=float)


def _clean(value: float | int | str | None) -> float | int | str | None:
    if isinstance(value, float) and not isfinite(value):
        return None
    return value


def compute_stats(result: BacktestResult) -> Stats:
    """All headline metrics of a backtest in one flat dict, in a fixed key order.

    Values are floats, ints, ISO strings or None (never NaN or inf), ready for a table or JSON.
    """
    ts = np.asarray(result.ts, dtype=np.int64)
    equity = np.asarray(result.equity, dtype=float)
    returns = simple_returns(equity)
    per_year = observed_bars_per_year(ts)
    dd_bars, dd_days = max_drawdown_duration(equity, ts)
    trades = round_trips(result.fills)
    pnls = _closed_pnls(trades)
    stats: Stats = {
        "strategy": result.strategy,
        "start": iso_utc(int(ts[0])) if ts.size else None,
        "end": iso_utc(int(ts[-1])) if ts.size else None,
        "bars": int(equity.size),
        "years": years_spanned(ts),
        "bars_per_year": per_year,
        "initial_cash": float(result.initial_cash),
        "final_equity": float(equity[-1]) if equity.size else None,
        "total_return": total_return(equity),
        "cagr": cagr(equity, ts),
        "annual_volatility": annual_volatility(returns, per_year),
        "sharpe": sharpe_ratio(returns, per_year),
        "sortino": sortino_ratio(returns, per_year),
        "max_drawdown": max_drawdown(equity),
        "max_drawdown_bars": dd_bars,
        "max_drawdown_days": dd_days,
        "exposure": exposure(result.gross_exposure),
        "trades": int(pnls.size),
        "open_trades": sum(1 for t in trades if t.is_open),
        "win_rate": win_rate(pnls),
        "profit_factor": profit_factor(pnls),
        "avg_trade_pnl": float(pnls.mean()) if pnls.size else None,
        "fees_paid": float(result.fees_paid),
        "funding_paid": float(result.funding_paid),
        "liquidations": int(result.liquidations),
    }
    return {key: _clean(value) for key, value in stats.items()}
