"""The engine issue's throughput workload, shared by the benchmarks that price an addition to it:
sma_cross 10/30 on seeded 1-minute synthetic bars, a billion USDT so no limit ever binds."""

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any


def sma_cross_run(bars: int, seed: int = 7) -> Callable[..., float]:
    """A function running the workload once with the given `run_backtest` options; its seconds."""
    from methtrader.data import gbm_bars
    from methtrader.engine.backtest import run_backtest
    from methtrader.exchange.sim.matching import SimConfig
    from methtrader.model.instrument import generic_perpetual
    from methtrader.strategies import SmaCross

    series = gbm_bars(bars, seed=seed, symbol="SYNTHUSDT")
    config = SimConfig(fee_taker=Decimal("0.00055"), funding_rate=Decimal(0))

    def run(**options: Any) -> float:
        start = time.perf_counter()
        run_backtest(
            SmaCross(fast=10, slow=30, qty=1),
            [(series, generic_perpetual("SYNTHUSDT"))],
            Decimal(10**9),
            config,
            **options,
        )
        return time.perf_counter() - start

    return run
