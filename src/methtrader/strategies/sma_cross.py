"""Moving-average crossover: long when the fast SMA of closes crosses above the slow one, short
when it crosses below, reversing through flat in a single order."""

from decimal import Decimal

import numpy as np

from methtrader.strategies.base import Strategy, StrategyError
from methtrader.strategies.indicators import SMA, Frame, Indicator


class SmaCross(Strategy):
    name = "sma_cross"
    fast: int = 10
    slow: int = 30
    qty: Decimal = Decimal("0.1")

    def validate(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise StrategyError(f"sma_cross needs 1 <= fast < slow, got {self.fast}/{self.slow}")
        if self.qty <= 0:
            raise StrategyError(f"sma_cross needs qty > 0, got {self.qty}")

    def indicators(self) -> dict[str, Indicator]:
        return {"fast": SMA(self.fast), "slow": SMA(self.slow)}

    def signal(self, x: Frame) -> np.ndarray:
        up = (x.prev.fast <= x.prev.slow) & (x.fast > x.slow)
        down = (x.prev.fast >= x.prev.slow) & (x.fast < x.slow)
        q = float(self.qty)
        return np.where(up, q, np.where(down, -q, np.nan))
