"""Live portfolio risk on the engine's timeline: EWMA covariances of log returns, and the VaR,
expected shortfall and equity of the current positions. Every formula is written once with
element-wise operations in a fixed order, so it gives bit-identical results on one bar (floats)
and on a stretch of bars (numpy arrays): the guard's per-bar check and the backtest's vectorised
scan therefore fire on the same bar."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.signal import lfilter
from scipy.stats import norm

from methtrader.model.bar import DAY_MS

Number = float | np.ndarray


@dataclass(frozen=True)
class RiskModel:
    """Parametric normal VaR/ES from RiskMetrics EWMA covariances (λ = 0.94 by default), scaled
    from one bar to the horizon by the square root of time."""

    confidence: float = 0.99
    horizon_ms: int = DAY_MS
    lam: float = 0.94
    min_bars: int = 20

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if not 0 < self.lam < 1:
            raise ValueError(f"lambda must be in (0, 1), got {self.lam}")

    @cached_property
    def z(self) -> float:
        return float(norm.ppf(self.confidence))

    @cached_property
    def es_factor(self) -> float:
        """ES / σ for a normal loss: φ(z) / (1 − c)."""
        return float(norm.pdf(self.z) / (1 - self.confidence))

    def horizon_scale(self, bar_ms: int) -> float:
        return math.sqrt(max(self.horizon_ms / bar_ms, 1.0))


def log_returns(close: np.ndarray) -> np.ndarray:
    """Log return into each step; 0 at the first step and wherever the price is unknown."""
    out = np.zeros(len(close))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = np.log(close[1:] / close[:-1])
    out[~np.isfinite(out)] = 0.0
    return out


def ewma_path(products: np.ndarray, lam: float, start: int) -> np.ndarray:
    """EWMA of `products` (r_i·r_j per step) known after each step: NaN before `start`, the mean
    of products[1 : start + 1] at `start`, then v_t = (1−λ)·x_t + λ·v_{t−1}."""
    out = np.full(len(products), np.nan)
    if start >= len(products):
        return out
    seed = float(np.mean(products[1 : start + 1]))
    out[start] = seed
    if start + 1 < len(products):
        out[start + 1 :], _ = lfilter([1 - lam], [1, -lam], products[start + 1 :], zi=[lam * seed])
    return out


def ewma_step(previous: float, product: float, lam: float) -> float:
    """One step of `ewma_path` with the same operation order as lfilter (bit-identical)."""
    return (1 - lam) * product + lam * previous


def portfolio_variance(weights: Sequence[Number], cov: dict[tuple[int, int], Number]) -> Number:
    """wᵀΣw over the upper triangle, in a fixed order (works on floats and arrays alike)."""
    total: Number = 0.0
    n = len(weights)
    for i in range(n):
        total = total + weights[i] * weights[i] * cov[i, i]
        for j in range(i + 1, n):
            total = total + 2.0 * weights[i] * weights[j] * cov[i, j]
    return total


def equity(wallet: float, qty: Sequence[float], cost: Sequence[float], close: Sequence[Number]) -> Number:
    """Wallet plus unrealised PnL, in the engine's marking order."""
    total: Number = wallet
    for q, c, p in zip(qty, cost, close, strict=True):
        total = total + (q * p - c)
    return total


def var_es(
    model: RiskModel,
    scale: float,
    qty: Sequence[float],
    close: Sequence[Number],
    cov: dict[tuple[int, int], Number],
) -> tuple[Number, Number]:
    """VaR and ES in currency of positions `qty` at prices `close` (NaN while history is short)."""
    weights = [q * p for q, p in zip(qty, close, strict=True)]
    variance = portfolio_variance(weights, cov)
    if isinstance(variance, float):  # one bar: math.sqrt is the same correctly rounded IEEE sqrt
        sigma = (math.sqrt(variance) if variance > 0 else 0.0 if variance <= 0 else math.nan) * scale
    else:
        sigma = np.sqrt(np.maximum(variance, 0.0)) * scale
    return model.z * sigma, model.es_factor * sigma
