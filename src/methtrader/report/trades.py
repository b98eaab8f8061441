"""Round trips: the fills of one symbol grouped from the moment the position leaves zero until it
returns to zero, so a strategy can be judged per trade rather than per fill."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from methtrader.model import Fill

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("1e-12")  # far below any fee Bybit charges (8 decimals), far above Decimal's noise

TradeSide = Literal["Long", "Short"]


@dataclass(frozen=True)
class RoundTrip:
    """One trade from flat to flat. `pnl` is realised price PnL minus every fee attributed to it.

    `qty` is the largest absolute size held; `entry_price`/`exit_price` are the VWAPs of the opening
    and closing fills. An open trade (`is_open`) has `exit_ts`/`exit_price` None and its `pnl` is
    the PnL realised by partial closes so far minus all fees paid so far; nothing is marked to
    market.
    """

    symbol: str
    side: TradeSide
    entry_ts: int
    exit_ts: int | None
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    pnl: Decimal
    fees: Decimal
    is_open: bool


@dataclass
class _Building:
    """Accumulators of a trade still being built from fills, in fill order."""

    seq: int
    symbol: str
    side: TradeSide
    entry_ts: int
    max_qty: Decimal = ZERO
    entry_qty: Decimal = ZERO
    entry_value: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_value: Decimal = ZERO
    realised: Decimal = ZERO
    fees: Decimal = ZERO

    def add_entry(
        self, qty: Decimal, price: Decimal, fee: Decimal, position: Decimal, realised: Decimal
    ) -> None:
        self.entry_qty += qty
        self.entry_value += qty * price
        self.fees += fee
        self.realised += realised  # zero from a sane ledger; kept so no PnL is ever dropped
        self.max_qty = max(self.max_qty, abs(position))

    def add_exit(self, qty: Decimal, price: Decimal, fee: Decimal, realised: Decimal) -> None:
        self.exit_qty += qty
        self.exit_value += qty * price
        self.fees += fee
        self.realised += realised

    def finish(self, exit_ts: int | None) -> RoundTrip:
        is_open = exit_ts is None
        exit_price = None if is_open or not self.exit_qty else self.exit_value / self.exit_qty
        return RoundTrip(
            symbol=self.symbol,
            side=self.side,
            entry_ts=self.entry_ts,
            exit_ts=exit_ts,
            qty=self.max_qty,
            entry_price=self.entry_value / self.entry_qty,
            exit_price=exit_price,
            pnl=self.realised - self.fees,
            fees=self.fees,
            is_open=is_open,
        )


def _split(share: Decimal) -> Decimal:
    """A pro-rata fee part, rounded to 1e-12 USDT only when it has more decimals: the two parts,
    and every sum of them, then stay exact (a 28-digit quotient would not)."""
    rounded = share.quantize(FEE_QUANTUM)
    return share if rounded == share else rounded


def round_trips(fills: Sequence[Fill]) -> list[RoundTrip]:
    """Group fills (in execution order) into round trips per symbol, sorted by entry time.

    The position is rebuilt from the fills' signed quantities starting flat, so the sequence must
    begin with the symbol flat. A fill that crosses through zero closes one trade and opens the
    next in the opposite direction; its realised PnL goes to the closed trade and its fee is split
    pro rata by quantity between the two.
    """
    positions: dict[str, Decimal] = {}
    building: dict[str, _Building] = {}
    done: list[tuple[int, RoundTrip]] = []
    seq = 0

    def open_trade(fill: Fill, qty: Decimal, fee: Decimal, position: Decimal, realised: Decimal) -> None:
        nonlocal seq
        side: TradeSide = "Long" if position > 0 else "Short"
        trade = _Building(seq=seq, symbol=fill.symbol, side=side, entry_ts=fill.ts)
        trade.add_entry(qty, fill.price, fee, position, realised)
        building[fill.symbol] = trade
        seq += 1

    for fill in fills:
        if fill.qty == 0:
            continue
        before = positions.get(fill.symbol, ZERO)
        after = before + fill.signed_qty
        positions[fill.symbol] = after
        if before == 0:
            open_trade(fill, fill.qty, fill.fee, after, fill.realised_pnl)
            continue
        trade = building[fill.symbol]
        if (before > 0) == (fill.signed_qty > 0):
            trade.add_entry(fill.qty, fill.price, fill.fee, after, fill.realised_pnl)
            continue
        closed = min(fill.qty, abs(before))
        close_fee = fill.fee if closed == fill.qty else _split(fill.fee * closed / fill.qty)
        trade.add_exit(closed, fill.price, close_fee, fill.realised_pnl)
        if after != 0 and (after > 0) == (before > 0):
            continue
        done.append((trade.seq, trade.finish(fill.ts)))
        del building[fill.symbol]
        if after != 0:
            open_trade(fill, fill.qty - closed, fill.fee - close_fee, after, ZERO)

    done.extend((trade.seq, trade.finish(None)) for trade in building.values())
    done.sort(key=lambda item: (item[1].entry_ts, item[0]))
    return [trip for _, trip in done]
