"""VaR + ES speed: historical and parametric (one call returns both) for one position over a
1,000-bar window and for a 50-asset portfolio over 1,000 days of seeded correlated returns.

    .venv/bin/python benchmarks/var_speed.py [--bars N] [--assets K] [--repeat R] [--number M] [--seed S]

Prints one JSON object: best-of-R milliseconds per call (each run times M calls with
time.perf_counter), the targets (1 ms one position, 5 ms portfolio) and whether each is met.
"""

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np
import scipy

from methtrader.risk.var import historical_var_es, parametric_var_es, portfolio_var_es

TARGET_SINGLE_MS = 1.0
TARGET_PORTFOLIO_MS = 5.0


def best_ms(call: Callable[[], object], repeat: int, number: int) -> float:
    """Best of `repeat` runs of `number` calls, in milliseconds per call."""
    call()  # warm-up: lazy imports, caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e3


def guard_overhead(bars: int, seed: int, runs: int = 5) -> dict[str, object]:
    """sma_cross 10/30 backtest on seeded 1-minute bars without and with the default guard
    (VaR 99 %/1 day limit 5 %, evaluated on every bar), best of `runs` each, interleaved."""
    from methtrader.risk.guard import RiskGuard
    from workload import sma_cross_run

    run = sma_cross_run(bars, seed)
    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(runs):
        for label in best:
            best[label] = min(best[label], run(risk=RiskGuard() if label == "with" else None))
    cost = 1 - best["without"] / best["with"]
    return {
        "bars": bars,
        "seconds_without_guard": round(best["without"], 4),
        "seconds_with_guard": round(best["with"], 4),
        "throughput_cost": round(cost, 4),
        "target_cost": 0.20,
        "meets_target": cost < 0.20,
    }


def correlated_returns(days: int, assets: int, seed: int) -> np.ndarray:
    """Daily log returns with a random positive-definite correlation and 1-5 % volatilities."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(assets, assets))
    cov = loadings @ loadings.T / assets + np.eye(assets)
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    vols = rng.uniform(0.01, 0.05, assets)
    chol = np.linalg.cholesky(corr * np.outer(vols, vols))
    return rng.standard_normal((days, assets)) @ chol.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1000, help="history length (bars / days)")
    parser.add_argument("--assets", type=int, default=50, help="portfolio size")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs; the best counts")
    parser.add_argument("--number", type=int, default=200, help="calls per timed run")
    parser.add_argument("--guard-bars", type=int, default=1_000_000, help="0 skips the guard overhead run")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--confidence", type=float, default=0.99)
    args = parser.parse_args()

    returns = correlated_returns(args.bars, args.assets, args.seed)
    single = returns[:, 0].copy()
    values = np.random.default_rng(args.seed + 1).uniform(-50_000.0, 50_000.0, args.assets)
    c = args.confidence

    single_ms = {
        "historical": best_ms(lambda: historical_var_es(single, 25_000.0, c), args.repeat, args.number),
        "parametric": best_ms(lambda: parametric_var_es(single, 25_000.0, c), args.repeat, args.number),
    }
    portfolio_ms = {
        method: best_ms(lambda m=method: portfolio_var_es(returns, values, c, 1, m), args.repeat, args.number)
        for method in ("historical", "parametric")
    }
    result = {
        "benchmark": "var_speed",
        "bars": args.bars,
        "assets": args.assets,
        "confidence": c,
        "repeat": args.repeat,
        "number": args.number,
        "single_position_ms": single_ms,
        "portfolio_ms": portfolio_ms,
        "targets_ms": {"single_position": TARGET_SINGLE_MS, "portfolio": TARGET_PORTFOLIO_MS},
        "meets_target": {
            "single_position": max(single_ms.values()) <= TARGET_SINGLE_MS,
            "portfolio": max(portfolio_ms.values()) <= TARGET_PORTFOLIO_MS,
        },
        "guard_overhead": None if args.guard_bars == 0 else guard_overhead(args.guard_bars, args.seed),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
