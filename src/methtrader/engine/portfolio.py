"""The engine's own ledger: positions, wallet and equity rebuilt from the fills it is told about,
so it can be reconciled against the venue's account rather than trusting it."""

from decimal import Decimal

from methtrader.model import Account, Fill

HeldFloat = list[tuple[str, float, float]]


class Portfolio:
    """Books fills and funding in Decimal; exposes a float snapshot for per-bar marking."""

    def __init__(self, cash: Decimal, leverage: Decimal = Decimal(1)) -> None:
        self.initial_cash = cash
        self.account = Account(wallet_balance=cash, leverage=leverage)
        self._snapshot: tuple[float, HeldFloat] | None = None

    def position(self, symbol: str) -> Decimal:
        pos = self.account.positions.get(symbol)
        return pos.qty if pos is not None else Decimal(0)

    def on_fill(self, fill: Fill) -> None:
        self.account.book_fill(fill.symbol, fill.signed_qty, fill.price, fill.fee)
        self._snapshot = None

    def adopt(self, symbol: str, qty: Decimal, entry_price: Decimal) -> None:
        """Take over a position held on the venue (at its entry price, no fee, no PnL)."""
        self.account.book_fill(symbol, qty, entry_price, Decimal(0))
        self._snapshot = None

    def on_funding(self, amount: Decimal) -> None:
        self.account.book_funding(amount)
        self._snapshot = None

    def snapshot(self) -> tuple[float, HeldFloat]:
        """(wallet, [(symbol, qty, cost)]) as floats, recomputed only after a fill or funding."""
        if self._snapshot is None:
            held = [
                (s, float(p.qty), float(p.cost)) for s, p in sorted(self.account.positions.items()) if p.qty
            ]
            self._snapshot = (float(self.account.wallet_balance), held)
        return self._snapshot
