"""A unified-margin USDT account: wallet balance, equity, initial/maintenance margin, availability."""

from dataclasses import dataclass, field
from decimal import Decimal

from methtrader.model.instrument import Instrument
from methtrader.model.position import Position

ZERO = Decimal(0)


@dataclass(slots=True)
class Account:
    """Cross margin across all symbols with one leverage setting, as Bybit's UNIFIED account.

    `wallet_balance` moves only on realised PnL, fees and funding; equity adds unrealised PnL.
    """

    wallet_balance: Decimal
    leverage: Decimal = Decimal(1)
    positions: dict[str, Position] = field(default_factory=dict)
    fees_paid: Decimal = ZERO
    funding_paid: Decimal = ZERO

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        upl = sum((p.unrealised_pnl(marks[s]) for s, p in self.positions.items() if p.qty), ZERO)
        return self.wallet_balance + upl

    def initial_margin(self, marks: dict[str, Decimal]) -> Decimal:
        return sum((p.notional(marks[s]) for s, p in self.positions.items() if p.qty), ZERO) / self.leverage

    def maintenance_margin(self, marks: dict[str, Decimal], instruments: dict[str, Instrument]) -> Decimal:
        return sum(
            (
                p.notional(marks[s]) * instruments[s].maintenance_margin_rate
                for s, p in self.positions.items()
                if p.qty
            ),
            ZERO,
        )

    def available_balance(self, marks: dict[str, Decimal], order_margin: Decimal = ZERO) -> Decimal:
        return self.equity(marks) - self.initial_margin(marks) - order_margin

    def book_fill(self, symbol: str, signed_qty: Decimal, price: Decimal, fee: Decimal) -> Decimal:
        """Apply a fill to the position and the wallet; return the realised PnL before fee."""
        pnl = self.position(symbol).apply(signed_qty, price)
        self.wallet_balance += pnl - fee
        self.fees_paid += fee
        return pnl

    def book_funding(self, amount: Decimal) -> None:
        """`amount` > 0 is paid by the account (a long when the funding rate is positive)."""
        self.wallet_balance -= amount
        self.funding_paid += amount
