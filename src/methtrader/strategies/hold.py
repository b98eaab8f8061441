"""Buy (or sell) once and hold: the exposure a stress test needs to see a crash in full."""

from decimal import Decimal

from methtrader.model import Bar
from methtrader.strategies.base import Strategy, StrategyError


class Hold(Strategy):
    """Opens `notional` USDT of the instrument at the first bar's close, then does nothing."""

    name = "hold"
    notional: Decimal = Decimal(10_000)
    side: str = "long"

    def validate(self) -> None:
        if self.notional <= 0:
            raise StrategyError(f"hold needs notional > 0, got {self.notional}")
        if self.side not in ("long", "short"):
            raise StrategyError(f"hold side must be long or short, got {self.side!r}")

    def on_bar(self, bar: Bar) -> None:
        if self.position(bar.symbol) == 0 and not self._ctx.open_orders(bar.symbol) and not self._done:
            qty = self.notional / Decimal(repr(bar.close))
            if self.side == "short":
                qty = -qty
            self._done = self.target_position(bar.symbol, qty) is not None

    def on_start(self) -> None:
        self._done = False
