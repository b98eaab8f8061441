"""Backtest reporting: round trips, performance statistics, a console table and files on disk.

Pure functions over a BacktestResult, so every number in a report can be recomputed by hand.
"""

from methtrader.report.files import write_outputs
from methtrader.report.render import print_report, stats_to_json
from methtrader.report.stats import compute_stats, drawdown_series
from methtrader.report.trades import RoundTrip, round_trips

__all__ = [
    "RoundTrip",
    "compute_stats",
    "drawdown_series",
    "print_report",
    "round_trips",
    "stats_to_json",
    "write_outputs",
]
