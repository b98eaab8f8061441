"""Clocks: simulated (set by the backtest runner) and wall (live), both in Unix milliseconds."""

import time


class SimClock:
    """Time moves only when the runner says so: a replay sees exactly the bar times."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now(self) -> int:
        return self._now

    def advance_to(self, ts_ms: int) -> None:
        if ts_ms < self._now:
            raise ValueError(f"clock cannot go back from {self._now} to {ts_ms}")
        self._now = ts_ms


class WallClock:
    """Real time for paper and live trading."""

    def now(self) -> int:
        return time.time_ns() // 1_000_000
