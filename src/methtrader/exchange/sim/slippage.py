"""Slippage models for taker fills: how far from the reference price a market order executes.

Prices are Decimal so that, say, 82 × 1.01 is 82.82 and not a float a hair above it, which
rounding against the trader would turn into a whole extra tick.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from methtrader.model import Side
from methtrader.model.instrument import to_decimal

ONE = Decimal(1)


class SlippageModel(Protocol):
    def price(self, side: Side, reference: Decimal, qty: Decimal, bar_volume: float) -> Decimal:
        """Execution price before tick rounding and before clamping to the bar's range."""
        ...


def _moved(side: Side, reference: Decimal, fraction: Decimal) -> Decimal:
    if not fraction:
        return reference
    return reference * (ONE + fraction) if side is Side.BUY else reference * (ONE - fraction)


@dataclass(frozen=True, slots=True)
class FixedSlippage:
    """Pay a fixed fraction of the price on every taker fill (0.0005 = 5 bps)."""

    fraction: float | Decimal = 0.0

    def price(self, side: Side, reference: Decimal, qty: Decimal, bar_volume: float) -> Decimal:
        if not self.fraction:
            return reference
        return _moved(side, reference, to_decimal(self.fraction))


@dataclass(frozen=True, slots=True)
class VolumeImpactSlippage:
    """A fixed part plus an impact proportional to the share of the bar's volume taken."""

    fraction: float | Decimal = 0.0
    impact: float | Decimal = 0.1

    def price(self, side: Side, reference: Decimal, qty: Decimal, bar_volume: float) -> Decimal:
        share = qty / to_decimal(bar_volume) if bar_volume > 0 else ONE
        return _moved(side, reference, to_decimal(self.fraction) + to_decimal(self.impact) * share)
