"""Buy (or sell) once and hold: the exposure a stress test needs to see a crash in full."""

from datetime import UTC, datetime
from decimal import Decimal

from methtrader.model import Bar
from methtrader.strategies.base import Strategy, StrategyError


class Hold(Strategy):
    """Opens `notional` USDT of the instrument at the close of the first bar at or after `start`
    (an ISO date; empty: the first bar), then does nothing."""

    name = "hold"
    notional: Decimal = Decimal(10_000)
    side: str = "long"
    start: str = ""

    def validate(self) -> None:
        if self.notional <= 0:
            raise StrategyError(f"hold needs notional > 0, got {self.notional}")
        if self.side not in ("long", "short"):
            raise StrategyError(f"hold side must be long or short, got {self.side!r}")
        try:
            moment = datetime.fromisoformat(self.start) if self.start else None
        except ValueError:
            raise StrategyError(f"hold start {self.start!r} is not an ISO date") from None
        self._start_ms = (
            0 if moment is None else int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)
        )

    def on_bar(self, bar: Bar) -> None:
        if bar.ts < self._start_ms or self._done:
            return
        if self.position(bar.symbol) == 0 and not self._ctx.open_orders(bar.symbol):
            qty = self.notional / Decimal(repr(bar.close))
            if self.side == "short":
                qty = -qty
            self._done = self.target_position(bar.symbol, qty) is not None

    def on_start(self) -> None:
        self._done = False
