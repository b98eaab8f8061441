"""Slippage models for taker fills: how far from the reference price a market order executes."""

from dataclasses import dataclass
from typing import Protocol

from methtrader.model import Side


class SlippageModel(Protocol):
    def price(self, side: Side, reference: float, qty: float, bar_volume: float) -> float:
        """Execution price before tick rounding and before clamping to the bar's range."""
        ...


@dataclass(frozen=True, slots=True)
class FixedSlippage:
    """Pay a fixed fraction of the price on every taker fill (0.0005 = 5 bps)."""

    fraction: float = 0.0

    def price(self, side: Side, reference: float, qty: float, bar_volume: float) -> float:
        return reference * (1 + self.fraction) if side is Side.BUY else reference * (1 - self.fraction)


@dataclass(frozen=True, slots=True)
class VolumeImpactSlippage:
    """A fixed part plus an impact proportional to the share of the bar's volume taken."""

    fraction: float = 0.0
    impact: float = 0.1

    def price(self, side: Side, reference: float, qty: float, bar_volume: float) -> float:
        share = qty / bar_volume if bar_volume > 0 else 1.0
        move = self.fraction + self.impact * share
        return reference * (1 + move) if side is Side.BUY else reference * (1 - move)
