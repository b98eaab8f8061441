"""One-way net position in a linear contract: PnL = qty × (exit − entry), settled in USDT."""

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)
COST_QUANTUM = Decimal("1e-12")


@dataclass(slots=True)
class Position:
    """`cost` is the signed entry value (Σ qty×price of the open part), so PnL needs no division
    except when a partial close removes a share of it (rounded to 1e-12 USDT)."""

    symbol: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realised_pnl: Decimal = ZERO

    @property
    def avg_entry(self) -> Decimal:
        return self.cost / self.qty if self.qty else ZERO

    def unrealised_pnl(self, mark: Decimal) -> Decimal:
        return self.qty * mark - self.cost

    def notional(self, mark: Decimal) -> Decimal:
        return abs(self.qty) * mark

    def apply(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Book a fill; return the PnL it realised (zero when it only adds to the position)."""
        old = self.qty
        new = old + signed_qty
        if old == 0 or (old > 0) == (signed_qty > 0):
            self.qty = new
            self.cost += signed_qty * price
            return ZERO
        closed = min(abs(signed_qty), abs(old))
        if closed == abs(old):
            removed = self.cost
        else:
            removed = (self.cost * closed / abs(old)).quantize(COST_QUANTUM)
        sign = 1 if old > 0 else -1
        pnl = sign * closed * price - removed
        self.cost -= removed
        self.qty = new
        if new != 0 and (new > 0) != (old > 0):  # reversed through flat: the rest opens anew
            self.cost = new * price
        self.realised_pnl += pnl
        return pnl
