"""VaR / ES: every method against values computed independently here — hand-worked samples,
scipy.stats.norm closed forms, numpy/pandas quantiles and plain-Python recursions."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from methtrader.risk.var import (
    DEFAULT_CONFIDENCE,
    METHODS,
    InsufficientHistory,
    cornish_fisher_var_es,
    ewma_covariance,
    ewma_sigma_path,
    ewma_var_es,
    ewma_variance_path,
    ewma_volatility,
    fhs_var_es,
    historical_var_es,
    parametric_var_es,
    portfolio_var_es,
    returns_from_prices,
    rolling_parametric_sigma,
    var_table,
)

SINGLE = {
    "historical": historical_var_es,
    "parametric": parametric_var_es,
    "cornish_fisher": cornish_fisher_var_es,
    "ewma": ewma_var_es,
    "fhs": fhs_var_es,
}

# Hand-worked sample: 20 simple returns (log returns are log1p of them), position 10,000.
SIMPLE = [
    0.012, -0.008, 0.005, -0.031, 0.018, -0.002, 0.009, -0.015, 0.021, -0.047,
    0.003, -0.011, 0.014, -0.006, 0.027, -0.022, 0.001, -0.019, 0.008, -0.004,
]  # fmt: skip
HAND = np.log1p(SIMPLE)


def _garch_like(n: int, seed: int) -> np.ndarray:
    """Returns with volatility clustering (a slowly wandering scale) and fat tails."""
    rng = np.random.default_rng(seed)
    scale = 0.01 * np.exp(np.cumsum(rng.normal(0.0, 0.05, n)).clip(-2, 2))
    return scale * rng.standard_t(5, n)


def _ewma_loop(r, lam, seed_var):
    """RiskMetrics recursion as a plain loop: forecasts after each return."""
    out, var = [], seed_var
    for x in r:
        var = lam * var + (1.0 - lam) * x * x
        out.append(var)
    return np.array(out)


def _k_largest(losses, confidence):
    k = math.ceil(round((1.0 - confidence) * len(losses), 9))
    desc = sorted(losses, reverse=True)
    return desc[k - 1], sum(desc[:k]) / k


# ---------------------------------------------------------------------------------------------
# conventions


def test_default_confidence():
    assert DEFAULT_CONFIDENCE == 0.99


def test_returns_from_prices_are_log_differences():
    prices = [100.0, 110.0, 99.0, 99.0]
    np.testing.assert_allclose(
        returns_from_prices(prices), [math.log(1.1), math.log(0.9), 0.0], rtol=1e-14, atol=0
    )
    tiny = returns_from_prices([60_000.0, 60_000.5])  # a half-dollar move on a large price
    assert tiny[0] == pytest.approx(math.log1p(0.5 / 60_000.0), rel=1e-15)
    two = returns_from_prices(np.array([[1.0, 10.0], [2.0, 5.0]]))
    np.testing.assert_allclose(two, [[math.log(2.0), math.log(0.5)]], rtol=1e-15)
    for bad in ([100.0, 0.0, 1.0], [100.0, -1.0], [100.0, np.nan]):
        with pytest.raises(ValueError):
            returns_from_prices(bad)


# ---------------------------------------------------------------------------------------------
# historical simulation


@pytest.mark.parametrize(
    ("value", "confidence", "var", "es"),
    [
        # long 10,000: losses −10,000·s; largest 470, 310, 220, 190, 150, 110, ...
        (10_000.0, 0.95, 470.0, 470.0),  # k = ceil(0.05·20) = 1 (not 2: 1e-9 tolerance)
        (10_000.0, 0.99, 470.0, 470.0),  # k = ceil(0.2) = 1
        (10_000.0, 0.90, 310.0, 390.0),  # k = 2: (470 + 310) / 2
        (10_000.0, 0.80, 190.0, 297.5),  # k = 4: (470 + 310 + 220 + 190) / 4
        (10_000.0, 0.75, 150.0, 268.0),  # k = 5: (1190 + 150) / 5
        # short 10,000: losses +10,000·s; largest 270, 210, 180, 140, ...
        (-10_000.0, 0.90, 210.0, 240.0),  # k = 2: (270 + 210) / 2
        (-10_000.0, 0.80, 140.0, 200.0),  # k = 4: (270 + 210 + 180 + 140) / 4
    ],
)
def test_historical_hand_worked(value, confidence, var, es):
    got = historical_var_es(HAND, value, confidence)
    assert got == pytest.approx((var, es), rel=1e-12)


def test_historical_matches_numpy_higher_quantile():
    # For n = 1000 and these c the k-th largest loss is numpy's "higher" quantile at c.
    r = _garch_like(1000, 1)
    losses = -25_000.0 * np.expm1(r)
    for c in (0.95, 0.99, 0.995):
        var, es = historical_var_es(r, 25_000.0, c)
        q = np.quantile(losses, c, method="higher")
        assert var == q
        assert es == pytest.approx(losses[losses >= q].mean(), rel=1e-12)
        assert (var, es) == pytest.approx(_k_largest(losses.tolist(), c), rel=1e-12)


def test_historical_overlapping_hand_worked():
    r = [0.01, -0.02, 0.03, -0.01, -0.03, 0.02, 0.00, -0.04, 0.01, 0.02]
    loss = lambda x: 1000.0 * (1.0 - math.exp(x))  # noqa: E731  long 1,000, h-bar log return x
    # h = 2: sums −.01, .01, .02, −.04, −.01, .02, −.04, −.03, .03 (9 scenarios)
    got = historical_var_es(r, 1000.0, 0.8, 2, "overlapping", min_observations=5)
    assert got == pytest.approx((loss(-0.04), loss(-0.04)), rel=1e-9)  # k = ceil(1.8) = 2
    got = historical_var_es(r, 1000.0, 0.7, 2, "overlapping", min_observations=5)
    assert got == pytest.approx((loss(-0.03), (2 * loss(-0.04) + loss(-0.03)) / 3), rel=1e-9)  # k = 3
    got = historical_var_es(r, 1000.0, 0.6, 2, "overlapping", min_observations=5)
    es = (2 * loss(-0.04) + loss(-0.03) + loss(-0.01)) / 4  # k = ceil(3.6) = 4
    assert got == pytest.approx((loss(-0.01), es), rel=1e-9)
    # h = 3: sums .02, .00, −.01, −.02, −.01, −.02, −.03, −.01 (8 scenarios), c = .75 → k = 2
    got = historical_var_es(r, 1000.0, 0.75, 3, "overlapping", min_observations=5)
    assert got == pytest.approx((loss(-0.02), (loss(-0.03) + loss(-0.02)) / 2), rel=1e-9)
    # 10 returns give only 2 overlapping 9-bar returns
    with pytest.raises(InsufficientHistory):
        historical_var_es(r, 1000.0, 0.8, 9, "overlapping", min_observations=5)
    with pytest.raises(ValueError):
        historical_var_es(r, 1000.0, 0.8, 2, "monthly", min_observations=5)


def test_sqrt_rule_is_exact_for_every_method():
    r = _garch_like(600, 2)
    for name, fn in SINGLE.items():
        one = fn(r, 50_000.0, 0.99)
        ten = fn(r, 50_000.0, 0.99, 10)
        assert ten == pytest.approx((one[0] * math.sqrt(10), one[1] * math.sqrt(10)), rel=1e-14), name
    for method in METHODS:
        rr = np.column_stack([r, _garch_like(600, 3)])
        one = portfolio_var_es(rr, [1e4, -3e4], 0.99, 1, method)
        four = portfolio_var_es(rr, [1e4, -3e4], 0.99, 4, method)
        assert four == pytest.approx((2 * one[0], 2 * one[1]), rel=1e-14), method


# ---------------------------------------------------------------------------------------------
# normal


@pytest.mark.parametrize("value", [80_000.0, -80_000.0])
@pytest.mark.parametrize("mean", [False, True])
@pytest.mark.parametrize("horizon", [1, 5])
@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.995])
def test_parametric_against_scipy_norm(value, mean, horizon, confidence):
    rng = np.random.default_rng(4)
    r = rng.normal(0.002, 0.015, 500)
    mu, sigma = r.mean(), r.std(ddof=1)
    # the loss −V·r over h bars is normal with these moments
    loc = -value * mu * horizon if mean else 0.0
    scale = abs(value) * sigma * math.sqrt(horizon)
    var = stats.norm.ppf(confidence, loc=loc, scale=scale)
    es = stats.norm.expect(lambda x: x, loc=loc, scale=scale, lb=var, conditional=True)
    got = parametric_var_es(r, value, confidence, horizon, mean=mean)
    assert got == pytest.approx((var, es), rel=1e-9)
    closed = scale * stats.norm.pdf(stats.norm.ppf(confidence)) / (1 - confidence) + loc
    assert got[1] == pytest.approx(closed, rel=1e-12)


def test_parametric_mean_floor():
    # drift 5 % a bar with 0.1 % noise: the long's 99 % outcome is still a gain → 0; the short loses
    r = 0.05 + 0.001 * np.random.default_rng(5).standard_normal(100)
    assert parametric_var_es(r, 1000.0, 0.99, mean=True) == (0.0, 0.0)
    var, es = parametric_var_es(r, -1000.0, 0.99, mean=True)
    assert var == pytest.approx(1000.0 * (r.mean() + stats.norm.ppf(0.99) * r.std(ddof=1)), rel=1e-12)
    assert es > var


# ---------------------------------------------------------------------------------------------
# Cornish-Fisher


def _z_cf(z, s, k):
    return z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36


def test_cornish_fisher_without_skew_or_kurtosis_is_parametric():
    # 5 × (−x), 20 × 0, 5 × x: symmetric (S = 0) and m4 / m2² = (x⁴/3) / (x²/3)² = 3 (K = 0)
    r = np.array([-0.013] * 5 + [0.0] * 20 + [0.013] * 5)
    assert stats.skew(r) == pytest.approx(0.0, abs=1e-12)
    assert stats.kurtosis(r) == pytest.approx(0.0, abs=1e-12)
    for value, c, h in [(1e5, 0.99, 1), (-1e5, 0.95, 3), (2e4, 0.995, 10)]:
        cf = cornish_fisher_var_es(r, value, c, h, min_observations=30)
        normal = parametric_var_es(r, value, c, h, min_observations=30)
        assert cf == pytest.approx(normal, rel=1e-12)


@pytest.mark.parametrize("value", [30_000.0, -30_000.0])
@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.995])
def test_cornish_fisher_against_formula_and_quadrature(value, confidence):
    rng = np.random.default_rng(1)
    r = 0.01 * rng.standard_t(10, 500) - 0.002 * rng.standard_normal(500) ** 2
    loss_unit = -np.sign(value) * r  # the loss per unit notional
    s, k = stats.skew(loss_unit), stats.kurtosis(loss_unit)  # moment estimators (bias=True)
    grid = np.linspace(-6, 6, 10_001)
    assert np.all(np.diff(_z_cf(grid, s, k)) > 0)  # inside the expansion's domain of validity
    z = stats.norm.ppf(confidence)
    scale = abs(value) * r.std(ddof=1)
    tail, _ = integrate.quad(lambda u: _z_cf(stats.norm.ppf(u), s, k), confidence, 1, limit=200)
    got = cornish_fisher_var_es(r, value, confidence)
    assert got == pytest.approx((scale * _z_cf(z, s, k), scale * tail / (1 - confidence)), rel=1e-7)
    mu = r.mean()
    with_mean = cornish_fisher_var_es(r, value, confidence, mean=True)
    assert with_mean == pytest.approx((got[0] - value * mu, got[1] - value * mu), rel=1e-12)


def test_cornish_fisher_rearranged_outside_domain():
    # jumps: mostly calm, a few large drops → loss skew ≈ +4, the expansion is not monotone
    rng = np.random.default_rng(6)
    r = 0.002 * rng.standard_normal(400)
    r[rng.choice(400, 8, replace=False)] -= 0.08
    s, k = stats.skew(-r), stats.kurtosis(-r)
    assert not np.all(np.diff(_z_cf(np.linspace(-6, 6, 10_001), s, k)) > 0)
    # rearrangement: quantiles of z_cf(Z), Z normal, on a fine grid of probability midpoints
    m = 1_000_000
    values = np.sort(_z_cf(stats.norm.ppf((np.arange(m) + 0.5) / m), s, k))
    previous = 0.0
    for c in (0.95, 0.975, 0.99, 0.995):
        kk = math.ceil((1 - c) * m - 1e-9)
        var_std, es_std = values[m - kk], values[m - kk :].mean()
        var, es = cornish_fisher_var_es(r, 1.0, c)
        sigma = r.std(ddof=1)
        assert var == pytest.approx(sigma * var_std, rel=2e-3)
        assert es == pytest.approx(sigma * es_std, rel=2e-3)
        assert es >= var >= previous
        previous = var


# ---------------------------------------------------------------------------------------------
# EWMA


@pytest.mark.parametrize("init", ["first", "sample"])
def test_ewma_variance_path_equals_loop(init):
    r = _garch_like(2000, 7)
    seed = r[0] ** 2 if init == "first" else float(np.mean(r[:30] ** 2))
    expected = _ewma_loop(r, 0.94, seed)
    np.testing.assert_allclose(ewma_variance_path(r, 0.94, init), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ewma_sigma_path(r, 0.94, init), np.sqrt(expected), rtol=1e-12, atol=0)
    assert ewma_volatility(r, 0.94, init) == pytest.approx(math.sqrt(expected[-1]), rel=1e-12)
    assert ewma_volatility(r) == ewma_volatility(r, 0.94, "sample")  # window forecasts seed "sample"
    np.testing.assert_allclose(ewma_variance_path(r, 0.97, init), _ewma_loop(r, 0.97, seed), rtol=1e-12)


def test_ewma_sigma_path_has_no_look_ahead():
    r = _garch_like(500, 8)
    full = ewma_sigma_path(r)
    for t in (0, 1, 29, 250, 499):
        prefix = ewma_sigma_path(r[: t + 1])
        np.testing.assert_allclose(prefix, full[: t + 1], rtol=1e-15, atol=0)
    assert full[0] == abs(r[0])  # the forecast after the first return is |r_0| (seed r_0²)


def test_ewma_var_es_against_scipy_norm():
    r = _garch_like(750, 9)
    sigma = math.sqrt(_ewma_loop(r, 0.94, np.mean(r[:30] ** 2))[-1])
    for value, c, h in [(1e4, 0.99, 1), (-2e4, 0.975, 5)]:
        scale = abs(value) * sigma * math.sqrt(h)
        var = stats.norm.ppf(c, scale=scale)
        es = stats.norm.expect(lambda x: x, scale=scale, lb=var, conditional=True)
        assert ewma_var_es(r, value, c, h) == pytest.approx((var, es), rel=1e-9)
    with pytest.raises(ValueError):
        ewma_var_es(r, 1e4, 0.99, lam=1.0)


@pytest.mark.parametrize("init", ["first", "sample"])
def test_ewma_covariance_equals_loop(init):
    rng = np.random.default_rng(10)
    r = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, -0.3], [0.0, 0.0, 1.0]]) * 0.01
    cov = np.outer(r[0], r[0]) if init == "first" else r[:30].T @ r[:30] / 30
    for row in r:
        cov = 0.94 * cov + 0.06 * np.outer(row, row)
    np.testing.assert_allclose(ewma_covariance(r, 0.94, init), cov, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# filtered historical simulation


def _fhs_losses(r, value):
    seed = float(np.mean(r[:30] ** 2))
    var_after = _ewma_loop(r, 0.94, seed)
    before = np.concatenate(([seed], var_after[:-1]))
    floor = 0.1**2 * float(np.mean(r**2))  # a prior σ is at least 10 % of the RMS return
    scenarios = r / np.sqrt(np.maximum(before, floor)) * math.sqrt(var_after[-1])
    return [-value * math.expm1(x) for x in scenarios]


@pytest.mark.parametrize("value", [40_000.0, -40_000.0])
def test_fhs_against_loop(value):
    r = _garch_like(800, 11)
    losses = _fhs_losses(r, value)
    for c in (0.95, 0.99):
        assert fhs_var_es(r, value, c) == pytest.approx(_k_largest(losses, c), rel=1e-10)


def test_fhs_after_flat_stretches():
    # runs of unchanged closes (zero returns) let the EWMA σ decay towards 0; the floor keeps the
    # next move from becoming a 10^4-σ residual: no overflow, no warning, the loop's numbers
    rng = np.random.default_rng(12)
    r = np.where(rng.random(600) < 0.05, 0.02 * rng.standard_normal(600), 0.0)
    r[:40] = 0.0
    r[100:400] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fhs_var_es(r, -1e4, 0.99)
    assert got == pytest.approx(_k_largest(_fhs_losses(r, -1e4), 0.99), rel=1e-10)
    assert got[1] < 1e4


# ---------------------------------------------------------------------------------------------
# portfolio


def _correlated(t, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    chol = np.linalg.cholesky(a @ a.T / n + np.eye(n))
    return 0.01 * rng.standard_normal((t, n)) @ chol.T


def test_portfolio_parametric_and_ewma_against_direct_quadratic_form():
    r = _correlated(500, 4, 13)
    v = np.array([10_000.0, -25_000.0, 5_000.0, 12_000.0])
    z = stats.norm.ppf(0.99)
    sigma_p = math.sqrt(v @ np.cov(r, rowvar=False) @ v)
    var, es = portfolio_var_es(r, v, 0.99, 3, "parametric")
    assert var == pytest.approx(z * sigma_p * math.sqrt(3), rel=1e-12)
    assert es == pytest.approx(sigma_p * math.sqrt(3) * stats.norm.pdf(z) / 0.01, rel=1e-12)
    cov = r[:30].T @ r[:30] / 30  # seed: mean r rᵀ over the first 30 rows
    for row in r:
        cov = 0.94 * cov + 0.06 * np.outer(row, row)
    var, _ = portfolio_var_es(r, v, 0.99, 1, "ewma")
    assert var == pytest.approx(z * math.sqrt(v @ cov @ v), rel=1e-12)
    assert var == pytest.approx(z * math.sqrt(v @ ewma_covariance(r) @ v), rel=1e-12)


def test_portfolio_historical_against_sorted_pnl():
    r = _correlated(500, 3, 14)
    v = [7_000.0, -3_000.0, 9_000.0]
    pnl = [sum(vi * math.expm1(x) for vi, x in zip(v, row, strict=True)) for row in r]
    for c in (0.95, 0.99):
        expected = _k_largest([-p for p in pnl], c)
        assert portfolio_var_es(r, v, c, 1, "historical") == pytest.approx(expected, rel=1e-10)


def test_portfolio_of_perfectly_correlated_assets_is_one_asset():
    r = _garch_like(400, 15)
    twice = np.column_stack([r, r])
    for a, b in [(3_000.0, 5_000.0), (6_000.0, -2_000.0)]:
        for method in ("parametric", "ewma", "historical"):
            assert portfolio_var_es(twice, [a, b], 0.99, 1, method) == pytest.approx(
                SINGLE[method](r, a + b, 0.99), rel=1e-12
            ), method
    # CF and FHS use the P&L series only: the same as a one-asset portfolio of the summed value
    for method in ("cornish_fisher", "fhs"):
        assert portfolio_var_es(twice, [3_000.0, 5_000.0], 0.99, 1, method) == pytest.approx(
            portfolio_var_es(r[:, None], [8_000.0], 0.99, 1, method), rel=1e-12
        ), method


def test_one_asset_portfolio_cornish_fisher_uses_revalued_returns():
    r = _garch_like(400, 16)
    assert portfolio_var_es(r[:, None], [8_000.0], 0.99, 1, "cornish_fisher") == pytest.approx(
        cornish_fisher_var_es(np.expm1(r), 8_000.0, 0.99), rel=1e-12
    )


def test_portfolio_of_perfectly_anticorrelated_assets():
    r = _garch_like(400, 17)
    mirror = np.column_stack([r, -r])
    # same-sign notionals hedge exactly: no linear risk, and the exact P&L V·(eʳ + e⁻ʳ − 2) ≥ 0
    for method in ("parametric", "ewma"):  # R·v is 0 up to rounding (BLAS may fuse multiply-adds)
        assert portfolio_var_es(mirror, [5_000.0, 5_000.0], 0.99, 1, method) == pytest.approx(
            (0.0, 0.0), abs=1e-9
        ), method
    assert portfolio_var_es(mirror, [5_000.0, 5_000.0], 0.99, 1, "historical") == (0.0, 0.0)
    # opposite notionals add up: the same as one asset of twice the size
    for method in ("parametric", "ewma"):
        assert portfolio_var_es(mirror, [5_000.0, -5_000.0], 0.99, 1, method) == pytest.approx(
            SINGLE[method](r, 10_000.0, 0.99), rel=1e-12
        ), method


def test_portfolio_diagonal_covariance_adds_in_quadrature():
    # zero-mean orthogonal columns: the sample covariance is exactly diagonal
    a = np.tile([1.0, -1.0, 1.0, -1.0], 6) * 0.01
    b = np.tile([1.0, 1.0, -1.0, -1.0], 6) * 0.03
    assert np.cov(a, b)[0, 1] == pytest.approx(0.0, abs=1e-18)
    va, vb = 20_000.0, -7_000.0
    one = parametric_var_es(a, va, 0.99)
    two = parametric_var_es(b, vb, 0.99)
    both = portfolio_var_es(np.column_stack([a, b]), [va, vb], 0.99, 1, "parametric")
    assert both == pytest.approx((math.hypot(one[0], two[0]), math.hypot(one[1], two[1])), rel=1e-12)


def test_portfolio_validation():
    r = _correlated(100, 2, 18)
    assert portfolio_var_es(r, [0.0, 0.0], 0.99) == (0.0, 0.0)
    with pytest.raises(ValueError):
        portfolio_var_es(r, [1.0, 2.0, 3.0], 0.99)
    with pytest.raises(ValueError):
        portfolio_var_es(r, [1.0, 2.0], 0.99, 1, "montecarlo")
    with pytest.raises(ValueError):
        portfolio_var_es(r[:, 0], [1.0], 0.99)
    bad = r.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError):
        portfolio_var_es(bad, [1.0, 2.0], 0.99)
    with pytest.raises(InsufficientHistory):
        portfolio_var_es(r[:19], [1.0, 2.0], 0.99)


# ---------------------------------------------------------------------------------------------
# table


def test_var_table_single_and_portfolio():
    r = _garch_like(500, 19)
    rows = var_table(r, 10_000.0, 50_000.0, 0.99, 2)
    assert [row["method"] for row in rows] == list(METHODS)
    for row in rows:
        var, es = SINGLE[row["method"]](r, 10_000.0, 0.99, 2)
        assert (row["var"], row["es"]) == (var, es)
        assert row["var_pct_equity"] == pytest.approx(100 * var / 50_000.0, rel=1e-15)
        assert row["es_pct_equity"] == pytest.approx(100 * es / 50_000.0, rel=1e-15)
    rr = _correlated(500, 3, 20)
    rows = var_table(rr, [1e4, -2e4, 3e4], 1e5)
    for row in rows:
        assert (row["var"], row["es"]) == portfolio_var_es(rr, [1e4, -2e4, 3e4], 0.99, 1, row["method"])
    with pytest.raises(ValueError):
        var_table(r, 10_000.0, 0.0)


# ---------------------------------------------------------------------------------------------
# edge cases


def test_flat_position_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in SINGLE.values():
            assert fn(HAND, 0.0, 0.99) == (0.0, 0.0)
            assert fn(HAND[:3], 0.0, 0.99) == (0.0, 0.0)  # no history needed for no position


def test_insufficient_history():
    short = _garch_like(19, 21)
    for name, fn in SINGLE.items():
        with pytest.raises(InsufficientHistory, match="at least 20") as info:
            fn(short, 1e4, 0.99)
        assert isinstance(info.value, ValueError)
        assert "\n" not in str(info.value), name
        assert fn(short[:10], 1e4, 0.9, min_observations=10)[0] >= 0.0
        with pytest.raises(ValueError):
            fn(short, 1e4, 0.99, min_observations=1)
        assert fn(_garch_like(20, 21), 1e4, 0.99)[1] > 0  # exactly 20 is enough


def test_zero_volatility_gives_zero_for_every_method():
    r = returns_from_prices(np.full(60, 101.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in SINGLE.values():
            assert fn(r, 1e4, 0.99) == (0.0, 0.0)
            assert fn(r, -1e4, 0.995, 10) == (0.0, 0.0)
        for method in METHODS:
            assert portfolio_var_es(np.column_stack([r, r]), [1e4, -3e3], 0.99, 1, method) == (0.0, 0.0)
        assert np.all(rolling_parametric_sigma(r, 20)[19:] == 0.0)
        assert ewma_volatility(r) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_returns_raise(bad):
    r = _garch_like(100, 22)
    r[50] = bad
    for fn in SINGLE.values():
        with pytest.raises(ValueError):
            fn(r, 1e4, 0.99)
    with pytest.raises(ValueError):
        rolling_parametric_sigma(r, 20)
    with pytest.raises(ValueError):
        ewma_variance_path(r)


@pytest.mark.parametrize("confidence", [0.5, 1.0, 0.3, 1.2, -0.99, float("nan"), 99.0])
def test_confidence_outside_half_to_one_raises(confidence):
    for fn in SINGLE.values():
        with pytest.raises(ValueError):
            fn(HAND, 1e4, confidence)
    with pytest.raises(ValueError):
        portfolio_var_es(HAND[:, None], [1e4], confidence)


def test_any_confidence_inside_half_to_one_is_accepted():
    for fn in SINGLE.values():
        assert fn(HAND, 1e4, 0.5000001)[0] >= 0.0
        assert fn(HAND, 1e4, 0.9999)[0] > 0.0


@pytest.mark.parametrize("horizon", [0, -1, 1.5, 2.0, True])
def test_bad_horizon_raises(horizon):
    for fn in SINGLE.values():
        with pytest.raises(ValueError):
            fn(HAND, 1e4, 0.99, horizon)


def test_numpy_integer_horizon_is_accepted():
    assert historical_var_es(HAND, 1e4, 0.9, np.int64(4)) == pytest.approx((620.0, 780.0), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# rolling helpers


@pytest.mark.parametrize("window", [2, 20, 250, 1000])
def test_rolling_sigma_matches_pandas(window):
    r = _garch_like(20_000, 23)
    got = rolling_parametric_sigma(r, window)
    expected = pd.Series(r).rolling(window).std(ddof=1).to_numpy()
    assert np.isnan(got[: window - 1]).all()
    np.testing.assert_allclose(got[window - 1 :], expected[window - 1 :], rtol=1e-9, atol=0)


def test_rolling_sigma_with_large_offset_and_flat_stretch():
    r = _garch_like(5_000, 24) + 3.0  # mean ≫ spread: the shift keeps the difference of sums accurate
    r[1000:1100] = 3.0  # constant stretch → exactly 0 where the window lies inside it
    got = rolling_parametric_sigma(r, 50)
    expected = pd.Series(r).rolling(50).std(ddof=1).to_numpy()
    np.testing.assert_allclose(got[49:1049], expected[49:1049], rtol=1e-9)
    np.testing.assert_allclose(got[1100:], expected[1100:], rtol=1e-9)
    assert np.all(got[1049:1100] == 0.0)


def test_rolling_sigma_short_and_invalid():
    assert np.isnan(rolling_parametric_sigma(np.ones(5) * 0.01, 10)).all()
    with pytest.raises(ValueError):
        rolling_parametric_sigma(np.ones(50), 1)


# ---------------------------------------------------------------------------------------------
# properties

CONFIDENCES = (0.95, 0.99, 0.995)


@st.composite
def return_samples(draw):
    n = draw(st.integers(50, 500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.floats(1e-4, 0.2))
    kind = draw(st.sampled_from(["normal", "t3", "jumps", "skewed", "sparse"]))
    if kind == "normal":
        r = rng.standard_normal(n)
    elif kind == "t3":
        r = rng.standard_t(3, n)
    elif kind == "jumps":
        r = 0.1 * rng.standard_normal(n) - (rng.random(n) < 0.03) * rng.exponential(5.0, n)
    elif kind == "skewed":
        r = rng.lognormal(0.0, 1.0, n) - 1.5
    else:
        r = np.where(rng.random(n) < 0.1, rng.standard_normal(n), 0.0)
    return scale * r


@settings(max_examples=60, deadline=None)
@given(return_samples(), st.sampled_from([1.0, -2.5e4, 3e6]), st.sampled_from([1, 7]))
def test_es_at_least_var_at_least_zero_and_monotone(r, value, horizon):
    for name, fn in SINGLE.items():
        previous = 0.0
        for c in CONFIDENCES:
            var, es = fn(r, value, c, horizon)
            assert es >= var >= previous >= 0.0, (name, c)
            previous = var


@settings(max_examples=25, deadline=None)
@given(return_samples(), return_samples(), st.sampled_from([(1e4, 1e4), (-5e3, 2e4)]))
def test_portfolio_es_at_least_var_at_least_zero_and_monotone(a, b, values):
    n = min(a.size, b.size)
    rr = np.column_stack([a[:n], b[:n]])
    for method in METHODS:
        previous = 0.0
        for c in CONFIDENCES:
            var, es = portfolio_var_es(rr, values, c, 1, method)
            assert es >= var >= previous >= 0.0, (method, c)
            previous = var
