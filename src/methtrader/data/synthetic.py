"""Seeded synthetic bars: geometric Brownian motion with occasional log-normal jumps.

Tests and benchmarks need any number of valid, reproducible bars without shipping data files,
including the fat-tailed gaps that stress stops and liquidations.
"""

import numpy as np

from methtrader.model.bar import BarSeries

YEAR_MS = 365.25 * 86_400_000  # crypto trades around the clock, so a year is calendar time


def gbm_bars(
    n: int,
    seed: int = 0,
    *,
    start_price: float = 100.0,
    interval_ms: int = 60_000,
    start_ms: int = 1_600_000_000_000,
    annual_drift: float = 0.0,
    annual_vol: float = 0.6,
    jump_intensity: float = 0.0005,
    jump_mean: float = 0.0,
    jump_std: float = 0.03,
    symbol: str = "SYNTH",
) -> BarSeries:
    """`n` valid OHLCV bars, identical for the same arguments; prices stay positive.

    Per bar the log return is GBM's (drift - vol²/2)·dt + vol·√dt·Z plus, with probability
    `jump_intensity`, a Normal(jump_mean, jump_std) jump. open[i] = close[i-1], open[0] =
    start_price; high/low widen max/min(open, close) by a random non-negative excursion; volume is
    log-normal and larger on big moves. Bar times start at `start_ms` rounded down to a multiple
    of `interval_ms`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not start_price > 0:
        raise ValueError(f"start_price must be positive, got {start_price}")
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    if annual_vol < 0 or jump_std < 0:
        raise ValueError("annual_vol and jump_std must be >= 0")
    if not 0 <= jump_intensity <= 1:
        raise ValueError(f"jump_intensity is a per-bar probability in [0, 1], got {jump_intensity}")

    rng = np.random.default_rng(seed)
    dt = interval_ms / YEAR_MS
    bar_vol = annual_vol * np.sqrt(dt)
    shocks = rng.standard_normal(n)
    is_jump = rng.random(n) < jump_intensity
    jumps = np.zeros(n)
    jumps[is_jump] = rng.normal(jump_mean, jump_std, int(is_jump.sum()))
    log_returns = (annual_drift - 0.5 * annual_vol**2) * dt + bar_vol * shocks + jumps

    close = start_price * np.exp(np.cumsum(log_returns))
    open_ = np.empty(n)
    open_[:1] = start_price
    open_[1:] = close[:-1]
    # Half-normal excursions beyond the candle body; exp(x >= 0) >= 1 keeps high >= max(o, c).
    excursion = np.abs(rng.standard_normal((2, n))) * (0.5 * bar_vol)
    high = np.maximum(open_, close) * np.exp(excursion[0])
    low = np.minimum(open_, close) * np.exp(-excursion[1])
    activity = 1.0 + np.abs(shocks) + is_jump
    volume = rng.lognormal(mean=np.log(100.0), sigma=0.5, size=n) * activity

    first = start_ms - start_ms % interval_ms
    ts = first + np.arange(n, dtype=np.int64) * interval_ms
    return BarSeries(symbol, ts, open_, high, low, close, volume)
