"""Seal rows a test wrote straight into the ledger into the audit chain, as a session's recorder
does for its own writes (so `audit pull` and `audit verify --log` accept them)."""

from methtrader.audit.rows import seal
from methtrader.store import Database, ledger
from methtrader.store.rowhash import row_ref


def seal_trade(db: Database, trade_id: str) -> None:
    """One audit entry naming the trade's order, lineage, events and fills as they are now."""
    with db.begin() as conn:
        rows = [("orders", ledger.get_order(conn, trade_id))]
        lineage = ledger.get_lineage(conn, trade_id)
        rows += [("lineage", lineage)] if lineage is not None else []
        rows += [("order_events", e) for e in ledger.order_events(conn, trade_id)]
        rows += [("fills", f) for f in ledger.fills_for(conn, trade_id)]
        seal(conn, "ledger", [{"op": "fixture", "rows": [row_ref(table, row) for table, row in rows]}])
