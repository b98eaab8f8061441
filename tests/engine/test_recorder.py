"""The live runner's ledger writer on SQLite and the private PostgreSQL: write-ahead orders with
lineage, idempotent events and fills, and a real database outage (the server stopped) journaled
and replayed — nothing lost, nothing doubled."""

from decimal import Decimal

from sqlalchemy import func, select

from methtrader.audit import chain
from methtrader.engine.recorder import LedgerRecorder
from methtrader.model import Fill, Liquidity, Order, OrderType, Side
from methtrader.store import Database, schema

LINEAGE = {"strategy": "sma_cross", "params": {"fast": 2}, "params_hash": "h" * 64, "code_commit": "c" * 40}


def order(trade_id: str) -> Order:
    return Order(trade_id, "BTCUSDT", Side.BUY, Decimal("0.100"), OrderType.MARKET)


def fill(exec_id: str, trade_id: str, qty: str = "0.050") -> Fill:
    return Fill(
        exec_id, trade_id, "BTCUSDT", Side.BUY, Decimal(qty), Decimal("9123.45"), Decimal("0.0123456"),
        Liquidity.TAKER, 1_700_000_000_000,
    )  # fmt: skip


def counts(db: Database) -> dict[str, int]:
    with db.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (("orders", schema.orders), ("lineage", schema.lineage),
                                ("events", schema.order_events), ("fills", schema.fills))
        }  # fmt: skip


def test_orders_with_lineage_events_and_fills_are_written_exactly_once(database, tmp_path):
    recorder = LedgerRecorder(database, tmp_path / "journal.jsonl")
    recorder.order(order("mt-1"), LINEAGE, ts=1)
    recorder.event("mt-1", "acknowledged", None, {"order_id": "X1"}, 2, {"exchange_order_id": "X1"})
    for _ in range(2):  # a redelivered execution is stored once
        recorder.fills([fill("E1", "mt-1"), fill("E2", "mt-1")])
    recorder.event("mt-1", "filled", "Filled", {}, 3, {"status": "Filled", "filled_qty": Decimal("0.100")})
    assert counts(database) == {"orders": 1, "lineage": 1, "events": 3, "fills": 2}
    with database.connect() as conn:
        row = conn.execute(select(schema.orders)).mappings().one()
        fee = conn.execute(select(schema.fills.c.fee).where(schema.fills.c.exec_id == "E1")).scalar_one()
    assert (row["status"], row["filled_qty"], row["exchange_order_id"]) == ("Filled", Decimal("0.1"), "X1")
    assert fee == Decimal("0.0123456")  # exact money, not a float
    assert recorder.backlog == 0 and recorder.outage is None


def test_a_database_outage_is_journaled_and_replayed_once(postgres_server, tmp_path):
    url = postgres_server.create_database()
    db = Database.from_url(url)
    db.upgrade()
    outages, recoveries, backlog = [], [], []
    journal = tmp_path / "journal.jsonl"
    recorder = LedgerRecorder(
        db, journal, on_outage=outages.append, on_recovered=lambda: recoveries.append(1),
        observe_backlog=lambda size, up: backlog.append((size, up)), audit=chain.append,
    )  # fmt: skip
    recorder.order(order("mt-1"), LINEAGE, ts=1)
    postgres_server.stop()
    try:
        recorder.fills([fill("E1", "mt-1")])
        recorder.order(order("mt-2"), LINEAGE, ts=2)
        recorder.fills([fill("E1", "mt-1"), fill("E2", "mt-2")])  # E1 again: replay must not double it
        assert len(outages) == 1 and recorder.outage is not None
        assert recorder.backlog == 5 and backlog[-1] == (5, False)
        assert recorder.replay() is False  # still down: the journal stays
        journaled = journal.read_text()
    finally:
        postgres_server.start()
    assert recorder.replay() is True and recoveries == [1] and backlog[-1] == (0, True)
    assert counts(db) == {"orders": 2, "lineage": 2, "events": 2, "fills": 2}
    # a crash between the replay's commit and emptying the journal replays it again: no change
    crashed = LedgerRecorder(db, tmp_path / "again.jsonl", audit=chain.append)
    (tmp_path / "again.jsonl").write_text(journaled)
    crashed.backlog = len(journaled.splitlines())
    crashed.outage = "journal not yet replayed"
    assert crashed.replay() is True
    assert counts(db) == {"orders": 2, "lineage": 2, "events": 2, "fills": 2}
    recorder.order(order("mt-3"), LINEAGE, ts=3)  # writes go straight to the database again
    assert counts(db)["orders"] == 3 and journal.read_text() == ""
    report = chain.verify_chain(db)  # one entry per committed change; the second replay added none
    assert report.ok and report.rows == 3, report.as_dict()
    db.close()


def test_a_journal_left_by_a_crash_is_replayed_at_the_next_start(database, tmp_path):
    journal = tmp_path / "journal.jsonl"
    first = LedgerRecorder(database, journal)
    first.outage = "simulated"  # as if the database had been down when the process died
    first.order(order("mt-1"), LINEAGE, ts=1)
    first.fills([fill("E1", "mt-1")])
    first.close()
    restarted = LedgerRecorder(database, journal)
    assert restarted.backlog == 4 and restarted.outage == "journal not yet replayed"
    assert restarted.replay() and counts(database) == {"orders": 1, "lineage": 1, "events": 1, "fills": 1}
