"""Value-at-Risk and Expected Shortfall as pure functions over numpy arrays, cheap enough per bar.

Conventions
-----------
Risk factor
    Log returns per bar, r_t = ln(P_t / P_{t−1}) (`returns_from_prices`, evaluated as
    log1p(ΔP / P_{t−1}), accurate to ~ε relative even for one-tick moves). Returns must be finite
    (NaN or ±inf → ValueError) and there must be at least `min_observations` of them (default 20 for
    every method; fewer → `InsufficientHistory`, a ValueError).
Position
    `value` is the signed notional V = qty × price (a short is negative); a portfolio is a vector of
    them. The P&L of a log return r is V·(exp(r) − 1), the loss its negative.
Sign and units
    VaR and ES are POSITIVE loss amounts in the currency of `value` (pass value=1.0 to get
    fractions of notional). Both are floored at 0 — a position whose tail outcome is still a gain
    has nothing at risk — and ES is never reported below VaR (that clamp only absorbs rounding:
    every method has ES ≥ VaR mathematically). A flat position (value 0, or all values 0) returns
    (0.0, 0.0) without looking at the returns.
Confidence and horizon
    c is the probability that the loss does not exceed VaR: 0.5 < c < 1 (0.95, 0.99, 0.995 in
    practice), anything else → ValueError. The horizon h is a whole number of bars ≥ 1.
Revaluation
    Historical simulation and FHS revalue exactly: loss = −V·(exp(r) − 1) per scenario. The
    parametric methods (normal, Cornish-Fisher, EWMA) use the delta-normal linear approximation on
    log returns, loss = −V·r, so the loss has mean −V·μ and standard deviation |V|·σ.
Empirical quantile ("higher" order statistic, conservative)
    With n scenario losses and k = ceil((1 − c)·n) (evaluated with a 1e-9 tolerance, so
    (1 − 0.95)·20 counts as 1 and not 2), VaR is the k-th largest loss and ES the mean of the k
    largest losses, i.e. of the losses ≥ VaR. Example: 20 losses at c = 0.90 → k = 2, VaR = the
    second largest, ES = the mean of the two largest.
Horizon scaling
    The square-root-of-time rule (1-bar VaR and ES × √h) everywhere, except historical simulation
    with aggregation="overlapping": the n − h + 1 overlapping h-bar log returns (rolling sums) are
    revalued and their empirical quantile taken; `min_observations` then counts those n − h + 1.
Normal (`parametric_var_es`)
    σ = sample standard deviation (ddof = 1), z = Φ⁻¹(c), φ the standard normal density.
    VaR = |V|·z·σ√h − V·μ·h and ES = |V|·σ√h·φ(z)/(1 − c) − V·μ·h, the μ terms only with
    mean=True. μ enters with the position's sign (upward drift lowers a long's loss and raises a
    short's), which for a long is the textbook |V|·(z·σ√h − μh).
Cornish-Fisher (`cornish_fisher_var_es`)
    S = sample skewness m3 / m2^1.5 and K = excess kurtosis m4 / m2² − 3 (moment estimators, as
    scipy.stats.skew / kurtosis with bias=True), both of the LOSS per unit notional, −sign(V)·r, so
    a short sees the return skew with its sign flipped. With z = Φ⁻¹(c) the modified quantile is
    z_cf = z + (z² − 1)S/6 + (z³ − 3z)K/24 − (2z³ − 5z)S²/36, VaR = |V|·σ√h·z_cf − V·μ·h (μ only
    with mean=True). ES is the mean of the CF quantile over the tail, (1/(1 − c))·∫_c^1 z_cf(u) du,
    evaluated exactly: z_cf is a polynomial in a standard normal Z and its tail moments are closed
    form, giving ES_std = φ(z)/(1 − c)·[1 + zS/6 + (z² − 1)K/24 − (2z² − 1)S²/36]. When the
    expansion is not monotone (|z| up to max(6, z + 1); large skew or kurtosis, or K < 0, lie
    outside its domain of validity) it is rearranged (Chernozhukov, Fernández-Val & Galichon 2010):
    VaR and ES are the "higher" empirical quantile and tail mean of z_cf(Z) on 2^16 normal quantile
    midpoints, so VaR stays monotone in c and ES ≥ VaR. Zero volatility means S = K = 0. The 1-bar
    shape (S, K) is kept at every horizon; only the scale grows with √h.
EWMA (RiskMetrics; `ewma_variance_path`, `ewma_var_es`)
    σ²_t = λ·σ²_{t−1} + (1 − λ)·r²_{t−1}, zero mean. Seed σ²_0 (the forecast before the first
    return): init="first" uses r_0², so element t of a path depends on r_0..r_t only; init="sample"
    uses the mean of the first min(30, n) squared returns, a steadier start that peeks up to r_29.
    The PATHS (`ewma_variance_path`, `ewma_sigma_path`) default to "first" — no look-ahead, which a
    backtest guard relies on. The POINT forecasts over a window (`ewma_volatility`, `ewma_var_es`,
    `ewma_covariance`, portfolio "ewma", FHS) default to / use "sample": the whole window is known
    there, and with λ = 0.94 the seed still weighs 0.94^20 ≈ 29 % after 20 bars, too much to hang on
    a single squared return. The forecast for the next bar uses all returns; VaR/ES are the normal
    ones with that σ and zero mean.
Filtered historical simulation (`fhs_var_es`)
    Each return is divided by its EWMA σ forecast made BEFORE it (seed "sample"; the seed itself
    for the first return), the residuals are multiplied by the current forecast (after the last
    return) and revalued exactly; then the empirical quantile as above and the √h rule. A prior
    forecast below FHS_SIGMA_FLOOR = 10 % of the window's RMS return is raised to that floor: after
    a long stretch of unchanged closes the EWMA σ decays towards 0 and the next ordinary move would
    otherwise become a residual of thousands of σ. The floor binds only where the forecast is
    below a tenth of the window's typical level (a 100-fold drop in variance).
Portfolio (`portfolio_var_es`)
    `values` are signed notionals of N assets, `returns_matrix` is (T, N). Parametric and EWMA use
    σ_p = sqrt(vᵀΣv) with Σ the sample covariance (ddof = 1) or the EWMA covariance recursion
    Σ_t = λΣ_{t−1} + (1 − λ)·r_{t−1}r_{t−1}ᵀ (seed "sample", see `ewma_covariance`); vᵀΣv is
    computed as the (EWMA) variance of the linear P&L series R·v, the same number in O(T·N) instead
    of O(T·N²). Historical uses the exactly revalued P&L series
    Σ_i V_i·(exp(r_i) − 1). Cornish-Fisher and FHS work on the gross-normalised portfolio return
    x_t = P&L_t / Σ|V_i| with a linear loss −Σ|V_i|·x (no second revaluation), so they depend on the
    P&L series only; note that a one-asset portfolio therefore differs from the single-asset CF
    (linear in r) and FHS (revalued) by the convexity exp(r) − 1 vs r. Horizons use the √h rule.
Rolling helpers for a backtest
    `rolling_parametric_sigma` (trailing-window sample std, O(n) from block-restarted cumulative
    sums, so its precision does not degrade with the length of the series) and
    `ewma_sigma_path` (σ forecast available after each bar); see their docstrings for precision
    and alignment.
"""

from functools import cache
from math import ceil, exp, isfinite, pi, sqrt
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_LAMBDA",
    "DEFAULT_MIN_OBSERVATIONS",
    "METHODS",
    "InsufficientHistory",
    "cornish_fisher_var_es",
    "ewma_covariance",
    "ewma_sigma_path",
    "ewma_var_es",
    "ewma_variance_path",
    "ewma_volatility",
    "fhs_var_es",
    "historical_var_es",
    "parametric_var_es",
    "portfolio_var_es",
    "returns_from_prices",
    "rolling_parametric_sigma",
    "var_table",
]

DEFAULT_CONFIDENCE = 0.99
DEFAULT_LAMBDA = 0.94
DEFAULT_MIN_OBSERVATIONS = 20
EWMA_SEED_BARS = 30
SMALL_WINDOW = 16
FHS_SIGMA_FLOOR = 0.1
METHODS = ("historical", "parametric", "cornish_fisher", "ewma", "fhs")

Method = Literal["historical", "parametric", "cornish_fisher", "ewma", "fhs"]
Aggregation = Literal["sqrt", "overlapping"]
EwmaInit = Literal["first", "sample"]

_INV_SQRT_2PI = 1.0 / sqrt(2.0 * pi)
_TAIL_COUNT_TOLERANCE = 1e-9
_CF_GRID_SIZE = 1 << 16


class InsufficientHistory(ValueError):
    """Fewer returns than `min_observations`: too little history for a risk estimate."""


# ---------------------------------------------------------------------------------------------
# validation


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.5 < c < 1.0:
        raise ValueError(f"confidence must lie strictly between 0.5 and 1, got {confidence!r}")
    return c


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an integer number of bars >= 1, got {horizon!r}")
    return int(horizon)


def _check_value(value: float) -> float:
    v = float(value)
    if not isfinite(v):
        raise ValueError(f"value must be finite, got {value!r}")
    return v


def _check_lambda(lam: float) -> float:
    lam_f = float(lam)
    if not 0.0 < lam_f < 1.0:
        raise ValueError(f"lam must lie strictly between 0 and 1, got {lam!r}")
    return lam_f


def _check_min_observations(min_observations: int) -> int:
    if isinstance(min_observations, bool) or not isinstance(min_observations, int | np.integer):
        raise ValueError(f"min_observations must be an integer, got {min_observations!r}")
    if min_observations < 2:
        raise ValueError(f"min_observations must be >= 2, got {min_observations}")
    return int(min_observations)


def _finite_array(returns: ArrayLike, ndim: int) -> np.ndarray:
    r = np.asarray(returns, dtype=float)
    if r.ndim != ndim:
        raise ValueError(f"returns must be a {ndim}-D array, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or infinite values")
    return r


def _require(count: int, min_observations: int, what: str = "returns") -> None:
    if count < _check_min_observations(min_observations):
        raise InsufficientHistory(f"need at least {min_observations} {what} for a VaR estimate, got {count}")


def _returns(returns: ArrayLike, min_observations: int) -> np.ndarray:
    r = _finite_array(returns, 1)
    _require(r.size, min_observations)
    return r


def _report(var: float, es: float) -> tuple[float, float]:
    """Floor at zero (never −0.0) and keep ES ≥ VaR against rounding."""
    var = float(var) if var > 0.0 else 0.0
    es = float(es) if es > var else var
    return var, es


# ---------------------------------------------------------------------------------------------
# building blocks


def returns_from_prices(prices: ArrayLike) -> np.ndarray:
    """Log returns ln(P_t / P_{t−1}) along axis 0 (n prices → n − 1 returns; (T, N) → (T − 1, N)).

    Prices must be finite and > 0, else ValueError.
    """
    p = np.asarray(prices, dtype=float)
    if p.ndim not in (1, 2):
        raise ValueError(f"prices must be 1-D or 2-D, got shape {p.shape}")
    if not (np.isfinite(p).all() and (p > 0).all()):
        raise ValueError("prices must be finite and strictly positive")
    return np.log1p(np.diff(p, axis=0) / p[:-1])  # ~ε relative even for tiny moves


def _tail_count(confidence: float, n: int) -> int:
    k = ceil((1.0 - confidence) * n - _TAIL_COUNT_TOLERANCE)
    return min(max(k, 1), n)


def _empirical_var_es(losses: np.ndarray, confidence: float) -> tuple[float, float]:
    """k-th largest loss and mean of the k largest, k = ceil((1 − c)·n) (unfloored)."""
    n = losses.size
    k = _tail_count(confidence, n)
    part = np.partition(losses, n - k)
    return float(part[n - k]), float(part[n - k :].mean())


def _mean_std(r: np.ndarray) -> tuple[float, float]:
    """Sample mean and std (ddof = 1); exactly 0 std for a constant series."""
    mu = float(r.mean())
    if r.max() == r.min():
        return mu, 0.0
    d = r - mu
    return mu, sqrt(float(d @ d) / (r.size - 1))


def _normal_var_es(scale: float, mean_loss: float, confidence: float, horizon: int) -> tuple[float, float]:
    """Normal loss with per-bar std `scale` (≥ 0) and mean `mean_loss`, √h rule on the std."""
    z = float(ndtri(confidence))
    s = scale * sqrt(horizon)
    m = mean_loss * horizon
    return _report(s * z + m, s * exp(-0.5 * z * z) * _INV_SQRT_2PI / (1.0 - confidence) + m)


# ---------------------------------------------------------------------------------------------
# historical and normal


def historical_var_es(
    returns: ArrayLike,
    value: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    aggregation: Aggregation = "sqrt",
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """Historical-simulation (VaR, ES) of a position of signed notional `value`, exact revaluation.

    "Higher" empirical quantile; horizon by √h ("sqrt") or overlapping h-bar log returns ("overlapping").
    """
    c, h, v = _check_confidence(confidence), _check_horizon(horizon), _check_value(value)
    if aggregation not in ("sqrt", "overlapping"):
        raise ValueError(f"aggregation must be 'sqrt' or 'overlapping', got {aggregation!r}")
    if v == 0.0:
        return 0.0, 0.0
    if aggregation == "sqrt" or h == 1:
        r = _returns(returns, min_observations)
        var, es = _empirical_var_es(-v * np.expm1(r), c)
        return _report(var * sqrt(h), es * sqrt(h))
    r = _finite_array(returns, 1)
    _require(max(r.size - h + 1, 0), min_observations, f"overlapping {h}-bar returns")
    csum = np.concatenate(([0.0], np.cumsum(r)))
    return _report(*_empirical_var_es(-v * np.expm1(csum[h:] - csum[:-h]), c))


def parametric_var_es(
    returns: ArrayLike,
    value: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    mean: bool = False,
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """Delta-normal (VaR, ES): loss −V·r with r ~ N(μ, σ²), σ the sample std (ddof = 1), √h rule.

    VaR = |V|zσ√h − Vμh, ES = |V|σ√h·φ(z)/(1 − c) − Vμh; the μ terms only with mean=True.
    """
    c, h, v = _check_confidence(confidence), _check_horizon(horizon), _check_value(value)
    if v == 0.0:
        return 0.0, 0.0
    mu, sigma = _mean_std(_returns(returns, min_observations))
    return _normal_var_es(abs(v) * sigma, -v * mu if mean else 0.0, c, h)


# ---------------------------------------------------------------------------------------------
# Cornish-Fisher


def _cf_quantile(z: np.ndarray | float, skew: float, kurt: float) -> np.ndarray | float:
    z2 = z * z
    return (
        z + (z2 - 1.0) * skew / 6.0 + (z2 - 3.0) * z * kurt / 24.0 - (2.0 * z2 - 5.0) * z * skew * skew / 36.0
    )


def _cf_monotone(skew: float, kurt: float, bound: float) -> bool:
    """dz_cf/dz = a·z² + b·z + c0 ≥ 0 on [−bound, bound]."""
    a = kurt / 8.0 - skew * skew / 6.0
    b = skew / 3.0
    c0 = 1.0 - kurt / 8.0 + 5.0 * skew * skew / 36.0
    lowest = min(a * bound * bound - b * bound + c0, a * bound * bound + b * bound + c0)
    if a > 0.0 and abs(b) < 2.0 * a * bound:
        lowest = min(lowest, c0 - b * b / (4.0 * a))
    return lowest >= 0.0


@cache
def _normal_grid() -> np.ndarray:
    """Standard normal quantiles at the midpoints of 2^16 equal-probability cells."""
    grid = ndtri((np.arange(_CF_GRID_SIZE) + 0.5) / _CF_GRID_SIZE)
    grid.flags.writeable = False  # shared by every call
    return grid


def _cf_standard_var_es(confidence: float, skew: float, kurt: float) -> tuple[float, float]:
    """CF quantile and tail mean in standard units (exact if monotone, else rearranged on a grid)."""
    z = float(ndtri(confidence))
    if _cf_monotone(skew, kurt, max(6.0, z + 1.0)):
        tail_density = exp(-0.5 * z * z) * _INV_SQRT_2PI / (1.0 - confidence)
        bracket = 1.0 + z * skew / 6.0 + (z * z - 1.0) * kurt / 24.0 - (2.0 * z * z - 1.0) * skew**2 / 36.0
        return float(_cf_quantile(z, skew, kurt)), tail_density * bracket
    return _empirical_var_es(_cf_quantile(_normal_grid(), skew, kurt), confidence)


def _cf_var_es(
    x: np.ndarray, value: float, confidence: float, horizon: int, mean: bool
) -> tuple[float, float]:
    """Cornish-Fisher on a validated series with linear loss −value·x."""
    mu, sigma = _mean_std(x)
    if sigma == 0.0:
        skew = kurt = 0.0
    else:
        d = x - mu
        d2 = d * d
        m2 = float(d2.mean())
        skew = float((d2 * d).mean()) / m2**1.5
        kurt = float((d2 * d2).mean()) / (m2 * m2) - 3.0
    if value > 0.0:
        skew = -skew  # the loss of a long is −V·x: its skew is that of x flipped
    q, tail = _cf_standard_var_es(confidence, skew, kurt)
    s = abs(value) * sigma * sqrt(horizon)
    m = -value * mu * horizon if mean else 0.0
    return _report(s * q + m, s * tail + m)


def cornish_fisher_var_es(
    returns: ArrayLike,
    value: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    mean: bool = False,
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """Modified (Cornish-Fisher) delta-normal (VaR, ES) with the sample skewness and excess kurtosis.

    ES is the exact tail mean of the CF quantile (rearranged where the expansion is not monotone).
    """
    c, h, v = _check_confidence(confidence), _check_horizon(horizon), _check_value(value)
    if v == 0.0:
        return 0.0, 0.0
    return _cf_var_es(_returns(returns, min_observations), v, c, h, mean)


# ---------------------------------------------------------------------------------------------
# EWMA


@cache
def _lfilter():
    from scipy.signal import lfilter  # imported on first use: scipy.signal takes ~1 s to import

    return lfilter


def _ewma_seed(r: np.ndarray, init: EwmaInit) -> float:
    if init == "first":
        return float(r[0] * r[0])
    if init == "sample":
        head = r[:EWMA_SEED_BARS]
        return float(head @ head) / head.size
    raise ValueError(f"init must be 'first' or 'sample', got {init!r}")


def _ewma_path(r: np.ndarray, lam: float, init: EwmaInit) -> tuple[float, np.ndarray]:
    """(seed σ²_0, forecasts after each return) for a validated non-empty series."""
    seed = _ewma_seed(r, init)
    path, _ = _lfilter()([1.0 - lam], [1.0, -lam], r * r, zi=[lam * seed])
    return seed, path


def ewma_variance_path(
    returns: ArrayLike, lam: float = DEFAULT_LAMBDA, init: EwmaInit = "first"
) -> np.ndarray:
    """RiskMetrics variance forecasts: element t = λ·σ²_t + (1 − λ)·r_t², the forecast for bar t + 1.

    Uses r_0..r_t only (init="first", seed r_0²); vectorised with scipy.signal.lfilter.
    """
    lam = _check_lambda(lam)
    r = _finite_array(returns, 1)
    if r.size == 0:
        _ewma_seed(np.zeros(1), init)  # still reject an unknown init
        return np.zeros(0)
    return _ewma_path(r, lam, init)[1]


def ewma_sigma_path(returns: ArrayLike, lam: float = DEFAULT_LAMBDA, init: EwmaInit = "first") -> np.ndarray:
    """EWMA σ forecast available after each bar: element t uses returns up to and including t.

    Element t is the 1-bar σ for bar t + 1, sqrt(ewma_variance_path(returns)[t]); no warm-up NaNs.
    """
    return np.sqrt(ewma_variance_path(returns, lam, init))


def ewma_volatility(
    returns: ArrayLike,
    lam: float = DEFAULT_LAMBDA,
    init: EwmaInit = "sample",
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> float:
    """EWMA σ forecast for the next bar from all returns (zero mean; seed: mean r² of the first 30).

    Equals ewma_sigma_path(returns, lam, init)[-1], after checking the history is long enough.
    """
    lam = _check_lambda(lam)
    r = _returns(returns, min_observations)
    return sqrt(float(_ewma_path(r, lam, init)[1][-1]))


def ewma_covariance(
    returns_matrix: ArrayLike, lam: float = DEFAULT_LAMBDA, init: EwmaInit = "sample"
) -> np.ndarray:
    """EWMA covariance forecast Σ_T after all T rows: Σ_t = λΣ_{t−1} + (1 − λ)r_{t−1}r_{t−1}ᵀ.

    Seed: the mean of r rᵀ over the first 30 rows ("sample") or r_0r_0ᵀ ("first"); O(T·N²).
    """
    lam = _check_lambda(lam)
    r = _finite_array(returns_matrix, 2)
    t = r.shape[0]
    if t == 0:
        raise InsufficientHistory("need at least 1 row of returns for an EWMA covariance, got 0")
    if init == "first":
        seed = np.outer(r[0], r[0])
    elif init == "sample":
        head = r[:EWMA_SEED_BARS]
        seed = head.T @ head / head.shape[0]
    else:
        raise ValueError(f"init must be 'first' or 'sample', got {init!r}")
    weights = (1.0 - lam) * lam ** np.arange(t - 1, -1, -1, dtype=float)
    return (r * weights[:, None]).T @ r + lam**t * seed


def ewma_var_es(
    returns: ArrayLike,
    value: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    lam: float = DEFAULT_LAMBDA,
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """RiskMetrics (VaR, ES): normal, zero mean, σ = `ewma_volatility` (all returns), √h rule.

    Linear loss −V·r, as `parametric_var_es` with the EWMA σ in place of the sample std.
    """
    c, h, v = _check_confidence(confidence), _check_horizon(horizon), _check_value(value)
    lam = _check_lambda(lam)
    if v == 0.0:
        return 0.0, 0.0
    sigma = ewma_volatility(returns, lam, min_observations=min_observations)
    return _normal_var_es(abs(v) * sigma, 0.0, c, h)


# ---------------------------------------------------------------------------------------------
# filtered historical simulation


def _fhs_scenarios(x: np.ndarray, lam: float) -> np.ndarray:
    """Returns standardised by their prior EWMA σ and rescaled by the current forecast."""
    seed, after = _ewma_path(x, lam, "sample")
    current = sqrt(float(after[-1]))
    if current == 0.0:  # every return is 0
        return np.zeros_like(x)
    before = np.empty_like(after)
    before[0] = seed
    before[1:] = after[:-1]
    np.maximum(before, FHS_SIGMA_FLOOR**2 * float(x @ x) / x.size, out=before)
    return x / np.sqrt(before) * current


def fhs_var_es(
    returns: ArrayLike,
    value: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    lam: float = DEFAULT_LAMBDA,
    *,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """Filtered historical simulation (VaR, ES): EWMA-devolatilised returns at today's σ, exact revaluation.

    "Higher" empirical quantile of −V·(exp(r*) − 1) over the rescaled returns r*, √h rule.
    """
    c, h, v = _check_confidence(confidence), _check_horizon(horizon), _check_value(value)
    lam = _check_lambda(lam)
    if v == 0.0:
        return 0.0, 0.0
    scenarios = _fhs_scenarios(_returns(returns, min_observations), lam)
    var, es = _empirical_var_es(-v * np.expm1(scenarios), c)
    return _report(var * sqrt(h), es * sqrt(h))


# ---------------------------------------------------------------------------------------------
# portfolio


def portfolio_var_es(
    returns_matrix: ArrayLike,
    values: ArrayLike,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    method: Method = "parametric",
    *,
    lam: float = DEFAULT_LAMBDA,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> tuple[float, float]:
    """Portfolio (VaR, ES) of signed notionals `values` (N,) over log returns `returns_matrix` (T, N).

    parametric/ewma: σ_p = sqrt(vᵀΣv); historical: revalued P&L; CF/FHS: P&L / gross; √h rule.
    """
    c, h = _check_confidence(confidence), _check_horizon(horizon)
    lam = _check_lambda(lam)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ValueError(f"values must be a 1-D array of finite notionals, got shape {v.shape}")
    if not v.any():
        return 0.0, 0.0
    r = _finite_array(returns_matrix, 2)
    if r.shape[1] != v.size:
        raise ValueError(f"returns_matrix has {r.shape[1]} columns but there are {v.size} values")
    _require(r.shape[0], min_observations, "rows of returns")
    if method == "parametric":
        return _normal_var_es(_mean_std(r @ v)[1], 0.0, c, h)
    if method == "ewma":
        return _normal_var_es(sqrt(float(_ewma_path(r @ v, lam, "sample")[1][-1])), 0.0, c, h)
    pnl = np.expm1(r) @ v
    if method == "historical":
        var, es = _empirical_var_es(-pnl, c)
        return _report(var * sqrt(h), es * sqrt(h))
    gross = float(np.abs(v).sum())
    x = pnl / gross
    if method == "cornish_fisher":
        return _cf_var_es(x, gross, c, h, mean=False)
    var, es = _empirical_var_es(-gross * _fhs_scenarios(x, lam), c)
    return _report(var * sqrt(h), es * sqrt(h))


# ---------------------------------------------------------------------------------------------
# side by side


def var_table(
    returns: ArrayLike,
    values: ArrayLike | float,
    equity: float,
    confidence: float = DEFAULT_CONFIDENCE,
    horizon: int = 1,
    *,
    lam: float = DEFAULT_LAMBDA,
    min_observations: int = DEFAULT_MIN_OBSERVATIONS,
) -> list[dict[str, float | str]]:
    """Every method side by side: rows {method, var, es, var_pct_equity, es_pct_equity} in `METHODS` order.

    1-D returns with a scalar value, or (T, N) returns with N values; *_pct_equity are percent of equity.
    """
    eq = float(equity)
    if not (isfinite(eq) and eq > 0.0):
        raise ValueError(f"equity must be finite and > 0, got {equity!r}")
    r = np.asarray(returns, dtype=float)
    if r.ndim == 1:
        value = float(np.asarray(values, dtype=float).reshape(()))
        single = {
            "historical": lambda: historical_var_es(
                r, value, confidence, horizon, min_observations=min_observations
            ),
            "parametric": lambda: parametric_var_es(
                r, value, confidence, horizon, min_observations=min_observations
            ),
            "cornish_fisher": lambda: cornish_fisher_var_es(
                r, value, confidence, horizon, min_observations=min_observations
            ),
            "ewma": lambda: ewma_var_es(
                r, value, confidence, horizon, lam, min_observations=min_observations
            ),
            "fhs": lambda: fhs_var_es(r, value, confidence, horizon, lam, min_observations=min_observations),
        }
        results = {m: single[m]() for m in METHODS}
    else:
        results = {
            m: portfolio_var_es(r, values, confidence, horizon, m, lam=lam, min_observations=min_observations)
            for m in METHODS
        }
    return [
        {
            "method": m,
            "var": var,
            "es": es,
            "var_pct_equity": 100.0 * var / eq,
            "es_pct_equity": 100.0 * es / eq,
        }
        for m, (var, es) in results.items()
    ]


# ---------------------------------------------------------------------------------------------
# rolling helpers


def _window_sums_direct(r: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Σx and Σ(x − window mean)² of every full window, two passes over w offsets: O(n·w)."""
    m = r.size - w + 1
    total = np.zeros(m)
    for k in range(w):
        total += r[k : k + m]
    mean = total / w
    squares = np.zeros(m)
    for k in range(w):
        d = r[k : k + m] - mean
        squares += d * d
    return total, squares


def _window_squares_blocked(r: np.ndarray, w: int) -> np.ndarray:
    """Σ(x − window mean)² of every full window in O(n) from prefix sums restarted every w bars.

    A window ending at bar t = b·w + j is a suffix of block b − 1 plus a prefix of block b. Both
    parts are shifted by the same anchor, the mean of block b − 1 (block 0 for block 0), so the
    window's sums need no large running totals and Σx² − (Σx)²/w cancels little.
    """
    n = r.size
    nb = -(-n // w)
    blocks = np.zeros(nb * w)
    blocks[:n] = r
    blocks = blocks.reshape(nb, w)
    means = blocks.mean(axis=1)
    anchor = np.concatenate((means[:1], means[:-1]))
    own = blocks - anchor[:, None]  # block b shifted by its own anchor: prefixes
    nxt = blocks[:-1] - anchor[1:, None]  # block b shifted by block b + 1's anchor: suffixes
    s1 = np.cumsum(own, axis=1).ravel()[w - 1 : n]  # prefixes: flat index b·w + j is the bar t
    s2 = np.cumsum(own * own, axis=1).ravel()[w - 1 : n]
    for out, part in ((s1, nxt), (s2, nxt * nxt)):
        # suffix of block b − 1 after position j = its total − its prefix through j (0 when j = w − 1)
        prefix = np.cumsum(part, axis=1)
        total = np.repeat(prefix[:, -1], w)
        out[1:] += total[: n - w] - prefix.ravel()[: n - w]
    return s2 - s1 * s1 / w


def rolling_parametric_sigma(returns: ArrayLike, window: int) -> np.ndarray:
    """Sample std (ddof = 1) over the trailing `window` returns ending at each bar; NaN until full.

    O(n) block-restarted prefix sums (direct sums if window ≤ 16); the error does not grow with n.
    """
    # Precision. Windows of up to SMALL_WINDOW returns are summed directly in two passes (mean,
    # then squared deviations): a few ε relative. Longer windows use `_window_squares_blocked`: the
    # rounding error of a window's Σ(x − anchor)² is about ε times that sum over the ≤ 2·window
    # neighbouring bars it is drawn from — never the whole history, so it does not grow with the
    # series — and the anchor (the previous block's mean) keeps Σx² − (Σx)²/w from cancelling
    # unless the window's mean moves far from its neighbourhood's against its spread. The relative
    # error of σ is thus ~ε·(energy of the two blocks / energy of the window): 1e-15..1e-12 for
    # ordinary returns, worse only for a window much quieter than the bars around it (tested to
    # 1e-9 against pandas' online algorithm). Windows whose returns are all identical are exactly
    # 0 (an integer count of repeats), and rounding never makes a variance negative (clipped).
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    w = int(window)
    r = _finite_array(returns, 1)
    n = r.size
    out = np.full(n, np.nan)
    if n < w:
        return out
    squares = _window_sums_direct(r, w)[1] if w <= SMALL_WINDOW else _window_squares_blocked(r, w)
    var = np.maximum(squares / (w - 1), 0.0)
    repeats = np.concatenate(([0], np.cumsum(r[1:] == r[:-1])))
    var[(repeats[w - 1 :] - repeats[: n - w + 1]) == w - 1] = 0.0
    out[w - 1 :] = np.sqrt(var)
    return out
