"""DirectBatch writes what SQLAlchemy Core would (same stored values, same row hashes), tells new rows
from stored ones, commits with its last statements and raises SQLAlchemy's errors, on both backends."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from methtrader.store import Database, ledger, rowhash, schema
from methtrader.store.direct import DirectBatch


def order_row(trade_id: str) -> dict[str, object]:
    return {
        "trade_id": trade_id, "venue": "sim-1", "account": "7", "symbol": "BTCUSDT", "side": "Buy",
        "type": "Limit", "qty": Decimal("0.0010"), "price": Decimal("43210.123456789012345678"),
        "status": "New", "strategy": "flip", "params_hash": "h" * 64, "created_ts": 1, "updated_ts": 1,
    }  # fmt: skip


def lineage_row(trade_id: str) -> dict[str, object]:
    return {
        "trade_id": trade_id, "strategy": "flip", "params": {"qty": "0.001", "n": 3, "x": 1.5},
        "params_hash": "h" * 64, "risk_snapshot": {"var": "12.5", "limits": [1, 2]}, "created_ts": 1,
    }  # fmt: skip


def stored(db: Database, table: str, trade_id: str) -> dict[str, object]:
    with db.connect() as conn:
        found = conn.execute(select(schema.metadata.tables[table]).where(
            schema.metadata.tables[table].c.trade_id == trade_id
        )).mappings().one()  # fmt: skip
    return dict(found)


def test_rows_read_back_as_core_writes_them(database: Database) -> None:
    with database.begin() as conn:
        ledger.insert_ignoring_duplicates(conn, schema.orders, [order_row("core")], ["trade_id"])
        ledger.insert_ignoring_duplicates(conn, schema.lineage, [lineage_row("core")], ["trade_id"])
    with database.begin() as conn, DirectBatch.of(conn) as batch:
        batch.insert(schema.orders, order_row("direct"), ["trade_id"])
        batch.insert(schema.lineage, lineage_row("direct"), ["trade_id"])
        batch.commit()
    for table in ("orders", "lineage"):
        core, direct = stored(database, table, "core"), stored(database, table, "direct")
        core.pop("trade_id"), direct.pop("trade_id")
        assert direct == core
        assert rowhash.row_hash(table, {**direct, "trade_id": "x"}) == rowhash.row_hash(
            table, {**core, "trade_id": "x"}
        )
    assert stored(database, "orders", "direct")["price"] == Decimal("43210.123456789012345678")
    assert stored(database, "orders", "direct")["time_in_force"] == "GTC"  # the column's default


def test_new_rows_are_returned_stored_ones_are_not(database: Database) -> None:
    with database.begin() as conn, DirectBatch.of(conn) as batch:
        first = batch.insert(schema.orders, order_row("t-1"), ["trade_id"])
        again = batch.insert(schema.orders, order_row("t-1"), ["trade_id"])
        batch.flush()
        assert first.rows == [("t-1",)] and again.rows == []
        batch.commit()


def test_errors_are_sqlalchemys_and_nothing_is_kept(database: Database) -> None:
    with pytest.raises(IntegrityError), database.begin() as conn, DirectBatch.of(conn) as batch:
        batch.insert(schema.orders, order_row("kept?"), ["trade_id"])
        batch.insert(schema.lineage, lineage_row("no-such-order"), ["trade_id"])  # foreign key
        batch.commit()
    with database.connect() as conn:
        assert conn.execute(select(schema.orders.c.trade_id)).all() == []


def test_a_rolled_back_batch_leaves_nothing(database: Database) -> None:
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), database.begin() as conn, DirectBatch.of(conn) as batch:
        batch.insert(schema.orders, order_row("t-9"), ["trade_id"])
        batch.flush()
        raise Abandon
    with database.begin() as conn, DirectBatch.of(conn) as batch:  # the connection is usable again
        assert batch.insert(schema.orders, order_row("t-9"), ["trade_id"]) is not None
        batch.commit()
    assert stored(database, "orders", "t-9")["trade_id"] == "t-9"
