"""On start, bring the ledger in line with the exchange before trading: orders the ledger holds as
open are looked up (an order the exchange never saw is marked so), executions since the ledger's
last knowledge are inserted once, and the positions of both are compared (a difference is said)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select

from methtrader.exchange.bybit.streams import parse_execution, parse_order, signed_positions
from methtrader.model import Fill, Liquidity, OrderStatus
from methtrader.store import schema

if TYPE_CHECKING:
    from methtrader.engine.recorder import LedgerRecorder
    from methtrader.exchange.bybit.adapter import BybitAdapter

ZERO = Decimal(0)
MARGIN_MS = 60_000  # executions are re-read from a minute before the ledger's knowledge ends
WEEK_MS = 7 * 86_400_000  # Bybit keeps executions queryable for 7 days through this endpoint
NEVER_SENT = "not on the exchange: the process stopped before the request left"

# Bybit's final order states; Cancelled variants leave the executed part in place
FINAL_STATUS = {
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "PartiallyFilledCanceled": OrderStatus.CANCELLED,
    "Deactivated": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
}


@dataclass
class LedgerReconciliation:
    """What the start-up check found and did."""

    open_orders: int = 0
    never_sent: list[str] = field(default_factory=list)
    updated: dict[str, str] = field(default_factory=dict)  # trade id -> status now recorded
    fills_inserted: int = 0
    ledger_position: Decimal = ZERO
    exchange_position: Decimal = ZERO
    exchange_entry_price: Decimal = ZERO  # the exchange's average entry of that position

    @property
    def consistent(self) -> bool:
        return self.ledger_position == self.exchange_position


async def reconcile_ledger(
    adapter: BybitAdapter, recorder: LedgerRecorder, symbol: str
) -> LedgerReconciliation:
    """Run the check for `symbol` on the recorder's venue and account (rows of other venues and
    accounts are not this exchange's to explain); the ledger must be reachable."""
    result = LedgerReconciliation()
    db = recorder.db
    now = time.time_ns() // 1_000_000
    orders, fills = schema.orders, schema.fills
    ours_only = (orders.c.venue == recorder.venue, orders.c.account == recorder.account)
    our_fills = (
        fills.c.venue == recorder.venue,
        fills.c.account == recorder.account,
        fills.c.symbol == symbol,
    )
    with db.connect() as conn:
        open_rows = conn.execute(
            select(orders.c.trade_id, orders.c.created_ts).where(
                *ours_only, orders.c.symbol == symbol, orders.c.status.in_(("New", "PartiallyFilled"))
            )
        ).all()
        known_until = conn.execute(select(func.max(fills.c.ts)).where(*our_fills)).scalar_one()
    result.open_orders = len(open_rows)
    starts = [ts for _, ts in open_rows] + ([known_until] if known_until is not None else [])
    since = max(min(starts, default=now) - MARGIN_MS, now - WEEK_MS + MARGIN_MS)

    realtime, _ = await adapter.fetch_pages(
        "privateGetV5OrderRealtime", {"category": "linear", "symbol": symbol, "limit": 50}
    )
    live = {row.get("orderLinkId"): parse_order(row) for row in realtime}
    for trade_id, _ in open_rows:
        update = live.get(trade_id)
        if update is None:
            history, _ = await adapter.fetch_pages(
                "privateGetV5OrderHistory", {"category": "linear", "symbol": symbol, "orderLinkId": trade_id}
            )
            update = parse_order(history[0]) if history else None
        if update is None:
            recorder.event(
                trade_id, "not_on_exchange", "Rejected", {"reason": NEVER_SENT}, now,
                {"status": "Rejected", "reject_reason": NEVER_SENT},
            )  # fmt: skip
            result.never_sent.append(trade_id)
            continue
        final = FINAL_STATUS.get(update.status)
        status = str(final) if final is not None else "PartiallyFilled" if update.cum_exec_qty else "New"
        payload = {"order_id": update.order_id, "cum_exec_qty": str(update.cum_exec_qty)}
        columns = {"status": status, "filled_qty": update.cum_exec_qty, "exchange_order_id": update.order_id}
        recorder.event(trade_id, "reconciled", status, payload, now, columns)
        result.updated[trade_id] = status

    rows, _ = await adapter.fetch_pages(
        "privateGetV5ExecutionList",
        {"category": "linear", "symbol": symbol, "startTime": since, "limit": 100},
    )
    executions = [e for e in (parse_execution(row) for row in rows) if e is not None]
    with db.connect() as conn:
        ours = set(
            conn.execute(
                select(orders.c.trade_id).where(orders.c.trade_id.in_({e.order_link_id for e in executions}))
            ).scalars()
        )
        seen = set(
            conn.execute(
                select(fills.c.exec_id).where(
                    *our_fills, fills.c.exec_id.in_({e.exec_id for e in executions})
                )
            ).scalars()
        )
    missed = [e for e in executions if e.order_link_id in ours and e.exec_id not in seen]
    recorder.fills(
        Fill(
            e.exec_id,
            e.order_link_id,
            e.symbol,
            e.side,
            e.qty,
            e.price,
            e.fee,
            Liquidity.MAKER if e.is_maker else Liquidity.TAKER,
            e.ts,
        )
        for e in missed
    )
    result.fills_inserted = len(missed)

    positions, _ = await adapter.fetch_pages(
        "privateGetV5PositionList", {"category": "linear", "symbol": symbol}
    )
    result.exchange_position = signed_positions(positions).get(symbol, ZERO)
    entries = [Decimal(str(row.get("avgPrice") or 0)) for row in positions if row.get("symbol") == symbol]
    result.exchange_entry_price = next((e for e in entries if e), ZERO)
    signed = func.sum(case((fills.c.side == "Buy", fills.c.qty), else_=-fills.c.qty))
    with db.connect() as conn:
        total = conn.execute(select(signed).where(*our_fills)).scalar_one()
    result.ledger_position = Decimal(str(total or 0)).normalize() + ZERO
    return result
