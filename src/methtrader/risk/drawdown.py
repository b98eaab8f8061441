"""Drawdown and loss tracking: peak equity, current and maximum drawdown, time under water, and
the loss since the start of the UTC day against a limit."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from methtrader.model.bar import DAY_MS


@dataclass
class DrawdownTracker:
    """Fed one equity value per bar (or fill); all fields are plain floats for the hot path."""

    peak: float = float("nan")
    drawdown: float = 0.0  # current, as a positive fraction below the peak
    max_drawdown: float = 0.0
    under_water_since: int | None = None
    day: int | None = None
    day_start_equity: float = float("nan")  # the last equity seen before the UTC day began
    daily_loss: float = 0.0  # positive fraction lost since then
    last_equity: float = float("nan")

    def update(self, ts: int, equity: float) -> None:
        if math.isnan(equity):  # nothing to learn
            return
        if not self.peak >= equity:  # also true for the NaN initial peak
            self.peak = equity
            self.under_water_since = None
        self.drawdown = 1.0 - equity / self.peak if self.peak > 0 else 0.0
        if self.drawdown > 0 and self.under_water_since is None:
            self.under_water_since = ts
        self.max_drawdown = max(self.max_drawdown, self.drawdown)
        day = ts // DAY_MS
        if day != self.day:
            self.day = day
            self.day_start_equity = equity if math.isnan(self.last_equity) else self.last_equity
        self.last_equity = equity
        start = self.day_start_equity
        self.daily_loss = max(0.0, 1.0 - equity / start) if start > 0 else 0.0

    def absorb(self, ts: np.ndarray, equity: np.ndarray) -> None:
        """`update` for every element in order, vectorised (the bars a backtest skips)."""
        if not len(equity):
            return
        first_peak = equity[0] if self.peak != self.peak else self.peak
        peaks = np.maximum.accumulate(np.concatenate(([first_peak], equity)))
        before, peak = peaks[:-1], peaks[1:]
        new_peak = equity > before
        if self.peak != self.peak:
            new_peak[0] = True
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = np.where(peak > 0, 1.0 - equity / peak, 0.0)
        self.peak = float(peak[-1])
        self.drawdown = float(drawdown[-1])
        self.max_drawdown = max(self.max_drawdown, float(drawdown.max()))
        last_new_peak = int(np.flatnonzero(new_peak)[-1]) if new_peak.any() else -1
        if last_new_peak >= 0 or self.under_water_since is None:
            wet = np.flatnonzero(drawdown[last_new_peak + 1 :] > 0)
            self.under_water_since = int(ts[last_new_peak + 1 + wet[0]]) if len(wet) else None
        last_day = int(ts[-1]) // DAY_MS
        if last_day != self.day:
            first = int(np.searchsorted(ts, last_day * DAY_MS))
            before = equity[first - 1] if first > 0 else self.last_equity
            self.day = last_day
            self.day_start_equity = float(equity[first] if math.isnan(before) else before)
        self.last_equity = float(equity[-1])
        start = self.day_start_equity
        self.daily_loss = max(0.0, 1.0 - float(equity[-1]) / start) if start > 0 else 0.0

    def absorb_below_peak(
        self,
        worst_bound: float,
        exact_worst: Callable[[], float],
        last: float,
        last_ts: int,
        day_start: float,
    ) -> bool:
        """`absorb` for a stretch that makes no new peak, from a lower bound of its equity (the
        exact minimum is asked for only when the bound cannot decide), its last equity and
        `day_start` (the equity before the last bar's UTC day began). False, and nothing
        changed, when even that is not enough: use `absorb`."""
        peak = self.peak
        if math.isnan(peak):
            return False
        worst = worst_bound
        if peak > 0 and (
            (self.under_water_since is None and worst < peak) or 1.0 - worst / peak > self.max_drawdown
        ):
            worst = exact_worst()
            if self.under_water_since is None and worst < peak:
                return False
        if peak > 0:
            self.max_drawdown = max(self.max_drawdown, 1.0 - worst / peak)
            self.drawdown = 1.0 - last / peak
        else:
            self.drawdown = 0.0
        day = last_ts // DAY_MS
        if day != self.day:
            self.day = day
            self.day_start_equity = day_start
        self.last_equity = last
        start = self.day_start_equity
        self.daily_loss = max(0.0, 1.0 - last / start) if start > 0 else 0.0
        return True

    def rebase(self) -> None:
        """Start measuring from the last equity (after a human resume); the maximum is kept."""
        if not math.isnan(self.last_equity):
            self.peak = self.day_start_equity = self.last_equity
        self.drawdown = self.daily_loss = 0.0
        self.under_water_since = None

    def time_under_water_ms(self, now: int) -> int:
        return 0 if self.under_water_since is None else now - self.under_water_since
