"""What measuring costs trading: backtest throughput and tick-to-order latency with metrics and
JSON logging on, each against off, measured in the same run (target: within 10 % for both).

    .venv/bin/python benchmarks/observability_overhead.py [--bars N] [--decisions N] [--runs K]

Backtest: sma_cross 10/30 on seeded 1-minute bars with the default risk guard; "on" adds the
process's Prometheus metrics (the guard reports to them) and JSON logging at INFO, as `methtrader
run` has them. Latency: `benchmarks/tick_to_order.py` without and with `--observe`, alternated,
best p99 of each. Prints one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from methtrader.ops.metrics import Metrics

TARGET = 0.10
HERE = Path(__file__).resolve().parent


def bar_counter(metrics: "Metrics") -> "Callable[[int, int], None]":
    """A backtest progress callback feeding methtrader_bars_processed_total."""
    seen = [0]

    def progress(done: int, total: int) -> None:
        metrics.bars.inc(done - seen[0])
        seen[0] = done

    return progress


def backtest_seconds(bars: int, runs: int) -> dict[str, float]:
    from methtrader.ops.logs import configure_logging, reset_logging
    from methtrader.ops.metrics import Metrics
    from methtrader.risk.guard import RiskGuard
    from workload import sma_cross_run

    run = sma_cross_run(bars)
    best = {"off": float("inf"), "on": float("inf")}
    with open(os.devnull, "w") as sink:
        for _ in range(runs):
            for label in best:
                if label == "off":
                    seconds = run(risk=RiskGuard())
                else:
                    metrics = Metrics()
                    configure_logging("bench", stream=sink)
                    seconds = run(risk=RiskGuard(metrics=metrics.risk), progress=bar_counter(metrics))
                    reset_logging()
                best[label] = min(best[label], seconds)
    return best


def tick_to_order_p99(decisions: int, runs: int) -> dict[str, float]:
    best = {"off": float("inf"), "on": float("inf")}
    for _ in range(runs):
        for label in best:
            args = [
                sys.executable,
                str(HERE / "tick_to_order.py"),
                "--decisions",
                str(decisions),
                "--ledgers",
                "none",
            ]
            done = subprocess.run(
                args + (["--observe"] if label == "on" else []), capture_output=True, text=True, check=True
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            best[label] = min(best[label], result["runs"]["none"]["ours"]["p99_ms"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    backtest = backtest_seconds(args.bars, args.runs + 2)
    latency = tick_to_order_p99(args.decisions, args.runs)
    throughput_cost = 1 - backtest["off"] / backtest["on"]
    p99_cost = latency["on"] / latency["off"] - 1
    print(
        json.dumps(
            {
                "benchmark": "observability_overhead",
                "backtest": {
                    "bars": args.bars,
                    "seconds_off": round(backtest["off"], 4),
                    "seconds_on": round(backtest["on"], 4),
                    "throughput_cost": round(throughput_cost, 4),
                },
                "tick_to_order": {
                    "decisions": args.decisions,
                    "p99_ms_off": latency["off"],
                    "p99_ms_on": latency["on"],
                    "p99_cost": round(p99_cost, 4),
                },
                "target": TARGET,
                "meets_target": throughput_cost < TARGET and p99_cost < TARGET,
            }
        )
    )


if __name__ == "__main__":
    main()
