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
        # PLACEHOLDER — filled in by the lead: the risk guard's per-bar cost inside a backtest is
        # measured elsewhere (not by this script), so it stays null here.
        "guard_overhead": None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
