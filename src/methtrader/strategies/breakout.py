"""Donchian breakout: long when the close exceeds the highest high of the previous `window` bars,
short below the lowest low; flat again when the close breaks the `exit`-bar channel the other way."""

from decimal import Decimal

from methtrader.model import Bar
from methtrader.strategies.base import Strategy, StrategyError
from methtrader.strategies.indicators import Highest, Indicator, Lowest


class Breakout(Strategy):
    """Event-driven on purpose: it shows the `on_bar` style with explicit orders."""

    name = "breakout"
    window: int = 20
    exit: int = 10
    qty: Decimal = Decimal("0.1")

    def validate(self) -> None:
        if self.window < 2 or self.exit < 1:
            raise StrategyError(f"breakout needs window >= 2 and exit >= 1, got {self.window}/{self.exit}")
        if self.qty <= 0:
            raise StrategyError(f"breakout needs qty > 0, got {self.qty}")

    def indicators(self) -> dict[str, Indicator]:
        return {
            "upper": Highest(self.window),
            "lower": Lowest(self.window),
            "exit_high": Highest(self.exit),
            "exit_low": Lowest(self.exit),
        }

    def on_bar(self, bar: Bar) -> None:
        x = self.values(bar.symbol)
        position = self.position(bar.symbol)
        if position == 0 and not self._ctx.open_orders(bar.symbol):
            if bar.close > x.prev.upper:
                self.buy(bar.symbol, self.qty)
            elif bar.close < x.prev.lower:
                self.sell(bar.symbol, self.qty)
        elif (position > 0 and bar.close < x.prev.exit_low) or (
            position < 0 and bar.close > x.prev.exit_high
        ):
            self.close(bar.symbol)
