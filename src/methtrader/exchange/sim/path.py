"""The intrabar price path a replayed bar trades along: deterministic, from its OHLC alone.

The common convention: open → low → high → close for a bar that closes at or above its open,
open → high → low → close otherwise, the four points evenly spaced over the bar's duration and
joined by straight lines. `fraction` is the share of the bar's duration gone by (0: its open, 1: its
close). The path reaches the bar's low and high, so by its end it has traded the whole bar's range.
"""

from dataclasses import replace

from methtrader.exchange.sim.matching import StepBar


class IntrabarPath:
    """Where `bar` trades at any moment of its duration, and what range it has traded by then."""

    __slots__ = ("bar", "points")

    def __init__(self, bar: StepBar) -> None:
        self.bar = bar
        middle = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
        self.points = (bar.open, *middle, bar.close)

    def price(self, fraction: float) -> float:
        """The price at `fraction` of the bar, on the straight line between two points."""
        legs = len(self.points) - 1
        at = min(max(fraction, 0.0), 1.0) * legs
        if at >= legs:
            return self.points[-1]
        leg = int(at)
        a, b = self.points[leg], self.points[leg + 1]
        price = a + (b - a) * (at - leg)
        return min(max(price, min(a, b)), max(a, b))  # float rounding must not leave the leg

    def traded(self, fraction: float) -> StepBar:
        """The bar as traded up to `fraction`: its open, the low and high reached so far and the
        price now as its close (volume and funding as the whole bar's)."""
        legs = len(self.points) - 1
        now = self.price(fraction)
        passed = [p for k, p in enumerate(self.points) if k <= fraction * legs] + [now]
        return replace(self.bar, high=max(passed), low=min(passed), close=now)
