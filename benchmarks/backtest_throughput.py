"""Backtest throughput: sma_cross 10/30 on 1,000,000 seeded synthetic 1-minute bars held in
memory, methtrader against backtesting.py on identical data and strategy, in the same run.

    .venv/bin/python benchmarks/backtest_throughput.py [--bars N] [--repeat R] [--skip-peer] [--profile]

Prints one JSON object: bars/s of each engine, their ratio and whether the trade counts agree.
"""

import argparse
import cProfile
import io
import json
import platform
import pstats
import time
import warnings
from decimal import Decimal

import numpy as np

from methtrader.data import gbm_bars
from methtrader.engine.backtest import run_backtest
from methtrader.exchange.sim.matching import SimConfig
from methtrader.model import BarSeries
from methtrader.model.instrument import generic_perpetual
from methtrader.report import compute_stats
from methtrader.strategies import SmaCross

FEE = Decimal("0.00055")
TARGET_BARS_PER_SECOND = 1_200_000


def make_bars(n: int, seed: int) -> BarSeries:
    """GBM bars rounded to the cent, so both engines see exactly the same prices."""
    raw = gbm_bars(n, seed=seed, symbol="SYNTHUSDT", interval_ms=60_000)
    o, h, low, c = (np.round(x, 2) for x in (raw.open, raw.high, raw.low, raw.close))
    return BarSeries(
        raw.symbol,
        raw.ts,
        o,
        np.maximum(h, np.maximum(o, c)),
        np.minimum(low, np.minimum(o, c)),
        c,
        raw.volume,
    )


def run_methtrader(series: BarSeries) -> tuple[float, int, float]:
    """Seconds for the engine run, closed trades, seconds including the statistics."""
    config = SimConfig(fee_taker=FEE, funding_rate=Decimal(0))
    start = time.perf_counter()
    result = run_backtest(
        SmaCross(fast=10, slow=30, qty=1), [(series, generic_perpetual("SYNTHUSDT"))], Decimal(10**9), config
    )
    engine_seconds = time.perf_counter() - start
    stats = compute_stats(result)
    return engine_seconds, int(stats["trades"]), time.perf_counter() - start


def run_backtesting_py(series: BarSeries) -> tuple[float, int]:
    import pandas as pd
    from backtesting import Backtest, Strategy

    def sma_cents(close: np.ndarray, n: int) -> np.ndarray:
        # the same exact integer-cent averages methtrader uses, so ties break identically
        csum = np.concatenate(([0], np.cumsum(np.rint(np.asarray(close) * 100).astype(np.int64))))
        out = np.full(len(close), np.nan)
        out[n - 1 :] = (csum[n:] - csum[:-n]) / n * 0.01
        return out

    class SmaCrossBt(Strategy):
        fast = 10
        slow = 30

        def init(self) -> None:
            self.f = self.I(sma_cents, self.data.Close, self.fast)
            self.s = self.I(sma_cents, self.data.Close, self.slow)

        def next(self) -> None:
            # the sma_cross rule: a cross towards the side already held changes nothing
            f, s = self.f, self.s
            if f[-2] <= s[-2] and f[-1] > s[-1] and not self.position.is_long:
                self.position.close()
                self.buy(size=1)
            elif f[-2] >= s[-2] and f[-1] < s[-1] and not self.position.is_short:
                self.position.close()
                self.sell(size=1)

    frame = pd.DataFrame(
        {
            "Open": series.open,
            "High": series.high,
            "Low": series.low,
            "Close": series.close,
            "Volume": series.volume,
        },
        index=pd.to_datetime(series.ts, unit="ms"),
    )
    bt = Backtest(frame, SmaCrossBt, cash=10**9, commission=float(FEE), margin=1.0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return time.perf_counter() - start, int(stats["# Trades"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs for methtrader")
    parser.add_argument("--skip-peer", action="store_true", help="do not run backtesting.py")
    parser.add_argument("--profile", action="store_true", help="add the top of a cProfile of one run")
    args = parser.parse_args()

    series = make_bars(args.bars, args.seed)
    runs = [run_methtrader(series) for _ in range(args.repeat)]
    engine_seconds, trades, with_stats = min(runs)
    report: dict[str, object] = {
        "benchmark": "sma_cross 10/30, market orders at next open, fee 0.055%, no slippage",
        "bars": args.bars,
        "seed": args.seed,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "methtrader": {
            "seconds": round(engine_seconds, 4),
            "bars_per_second": round(args.bars / engine_seconds),
            "seconds_with_stats": round(with_stats, 4),
            "trades": trades,
        },
        "target_bars_per_second": TARGET_BARS_PER_SECOND,
        "meets_target": args.bars / engine_seconds >= TARGET_BARS_PER_SECOND,
    }
    if not args.skip_peer:
        peer_seconds, peer_trades = run_backtesting_py(series)
        report["backtesting_py"] = {
            "version": __import__("backtesting").__version__,
            "seconds": round(peer_seconds, 4),
            "bars_per_second": round(args.bars / peer_seconds),
            "trades": peer_trades,
        }
        report["ratio"] = round(peer_seconds / engine_seconds, 2)
        report["trades_identical"] = peer_trades == trades
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_methtrader, series)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        report["profile_top"] = [line for line in text.getvalue().splitlines() if line.strip()][-16:]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
