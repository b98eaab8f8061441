"""A single execution against an order, with the fee and the realised PnL it booked."""

from dataclasses import dataclass
from decimal import Decimal

from methtrader.model.enums import Liquidity, Side


@dataclass(frozen=True, slots=True)
class Fill:
    """`fee` is positive when paid; `realised_pnl` is the price PnL closed by this fill, before fee."""

    exec_id: str
    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    liquidity: Liquidity
    ts: int
    realised_pnl: Decimal = Decimal(0)
    position_after: Decimal = Decimal(0)
    is_liquidation: bool = False

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side is Side.BUY else -self.qty

    @property
    def notional(self) -> Decimal:
        return self.qty * self.price
