"""The ledger on SQLite and PostgreSQL: orders and lineage, idempotent fills and events, exact money."""

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from methtrader.model.enums import Liquidity, OrderStatus, OrderType, Side
from methtrader.model.fill import Fill
from methtrader.model.order import Order
from methtrader.store import Database, ledger, schema

NOW = 1_700_000_000_000


def order(trade_id: str = "t-1", **overrides) -> Order:
    fields = dict(
        trade_id=trade_id,
        symbol="BTCUSDT",
        side=Side.BUY,
        qty=Decimal("0.001"),
        type=OrderType.LIMIT,
        price=Decimal("43210.5"),
        created_ts=NOW,
    )
    return Order(**{**fields, **overrides})


def fill(exec_id: str, trade_id: str = "t-1", qty: str = "0.0005", price: str = "43210.5") -> Fill:
    return Fill(
        exec_id=exec_id,
        trade_id=trade_id,
        symbol="BTCUSDT",
        side=Side.BUY,
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.0118828875"),
        liquidity=Liquidity.MAKER,
        ts=NOW + 5,
    )


def write_order(db: Database, trade_id: str = "t-1", **overrides) -> None:
    with db.begin() as conn:
        ledger.insert_order(conn, order(trade_id, **overrides), strategy="sma_cross", params_hash="ab" * 32)


def count(db: Database, table) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_order_and_lineage_are_written_together_and_read_back(database: Database) -> None:
    with database.begin() as conn:
        ledger.insert_order(conn, order(), strategy="sma_cross", params_hash=ledger.params_hash({"fast": 10}))
        ledger.insert_lineage(
            conn,
            trade_id="t-1",
            strategy="sma_cross",
            params={"fast": 10, "qty": Decimal("0.1")},
            model_run_id=None,
            code_commit="0" * 40,
            code_dirty=True,
            features_hash="f" * 64,
            risk_snapshot={"var": Decimal("123.45"), "state": "ACTIVE"},
            created_ts=NOW,
        )
    with database.connect() as conn:
        row = ledger.get_order(conn, "t-1")
        lineage = ledger.get_lineage(conn, "t-1")
    assert row is not None and lineage is not None
    assert (row["side"], row["type"], row["status"], row["time_in_force"]) == ("Buy", "Limit", "New", "GTC")
    assert row["qty"] == Decimal("0.001") and row["price"] == Decimal("43210.5")
    assert row["reduce_only"] is False and row["created_ts"] == row["updated_ts"] == NOW
    assert row["params_hash"] == ledger.params_hash({"fast": 10})
    assert lineage["params"] == {"fast": 10, "qty": "0.1"}  # decimals as exact strings
    assert lineage["params_hash"] == ledger.params_hash({"fast": 10, "qty": Decimal("0.1")})
    assert lineage["risk_snapshot"] == {"var": "123.45", "state": "ACTIVE"}
    assert lineage["code_dirty"] is True


def test_a_trade_id_is_used_once(database: Database) -> None:
    write_order(database)
    with pytest.raises(IntegrityError):
        write_order(database)
    assert count(database, schema.orders) == 1


def test_order_update(database: Database) -> None:
    write_order(database)
    with database.begin() as conn:
        assert ledger.update_order(
            conn, "t-1", status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal("0.0005"), updated_ts=NOW + 1
        )
        assert not ledger.update_order(conn, "nope", status="Filled")
        row = ledger.get_order(conn, "t-1")
    assert row is not None and row["status"] == "PartiallyFilled" and row["filled_qty"] == Decimal("0.0005")


def test_a_redelivered_fill_is_stored_once(database: Database) -> None:
    write_order(database)
    with database.begin() as conn:
        assert ledger.record_fill(conn, fill("e-1")) is True
        assert ledger.record_fill(conn, fill("e-1")) is False
    with database.begin() as conn:  # and in a later transaction, as after a reconnect
        assert ledger.record_fill(conn, fill("e-1")) is False
        assert ledger.record_fills(conn, [fill("e-2"), fill("e-1"), fill("e-2")]) == 1
        stored = ledger.fills_for(conn, "t-1")
    assert [f["exec_id"] for f in stored] == ["e-1", "e-2"]
    assert stored[0]["fee"] == Decimal("0.0118828875") and stored[0]["liquidity"] == "Maker"


def test_events_are_appended_idempotently(database: Database) -> None:
    write_order(database)
    with database.begin() as conn:
        assert ledger.append_order_event(conn, "t-1", seq=1, kind="sent", ts=NOW, payload={"qty": "0.001"})
        assert ledger.append_order_event(conn, "t-1", seq=2, kind="ack", status=OrderStatus.NEW, ts=NOW + 1)
        assert not ledger.append_order_event(conn, "t-1", seq=1, kind="sent", ts=NOW, payload={"x": 1})
    with database.begin() as conn:
        assert not ledger.append_order_event(conn, "t-1", seq=2, kind="ack", ts=NOW + 1)
        events = ledger.order_events(conn, "t-1")
    assert [(e["seq"], e["kind"], e["status"]) for e in events] == [(1, "sent", None), (2, "ack", "New")]
    assert events[0]["payload"] == {"qty": "0.001"}


def test_an_event_needs_its_order(database: Database) -> None:
    with pytest.raises(IntegrityError), database.begin() as conn:
        ledger.append_order_event(conn, "unknown", seq=1, kind="sent", ts=NOW)


EXACT = [
    "0",
    "0.1",
    "0.000000000000000001",
    "12345678901234567890.123456789012345678",
    "-98765.4321",
    "100",
    "1E+3",
    "0.30000000000000004",
]


@pytest.mark.parametrize("text", EXACT)
def test_money_round_trips_exactly(database: Database, text: str) -> None:
    value = Decimal(text)
    write_order(database, qty=value, price=value)
    with database.connect() as conn:
        row = ledger.get_order(conn, "t-1")
    assert row is not None
    assert row["qty"] == value and row["price"] == value
    assert isinstance(row["qty"], Decimal)


def test_snapshots_guard_changes_and_control_actions(database: Database) -> None:
    from methtrader.model.instrument import Instrument

    instrument = Instrument(
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        min_notional=Decimal("5"),
        max_leverage=Decimal("100"),
        maker_fee=Decimal("0.0002"),
        taker_fee=Decimal("0.00055"),
    )
    with database.begin() as conn:
        ledger.upsert_instrument(conn, instrument, updated_ts=NOW)
        ledger.upsert_instrument(conn, instrument, updated_ts=NOW + 1)
        ledger.snapshot_position(conn, ts=NOW, symbol="BTCUSDT", qty=Decimal("0.002"), cost=Decimal("86.421"))
        ledger.snapshot_equity(conn, ts=NOW, balance=Decimal("10000"), equity=Decimal("10000.5"))
        ledger.record_guard_change(
            conn, ts=NOW, from_state="ACTIVE", to_state="HALTED", reason="VaR 6%", snapshot={"var": "0.06"}
        )
        assert ledger.record_control_action(conn, seq=7, action="brake", who="ops", why="incident", ts=NOW)
        assert not ledger.record_control_action(
            conn, seq=7, action="brake", who="ops", why="incident", ts=NOW
        )
    assert count(database, schema.instruments) == 1
    with database.connect() as conn:
        assert conn.execute(select(schema.instruments.c.taker_fee)).scalar_one() == Decimal("0.00055")
        assert conn.execute(select(schema.equity_snapshots.c.equity)).scalar_one() == Decimal("10000.5")
        assert conn.execute(select(schema.guard_state_changes.c.snapshot)).scalar_one() == {"var": "0.06"}
    assert count(database, schema.control_actions) == 1


EXAMPLES = itertools.count()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
@given(
    deliveries=st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=30),
    batch=st.integers(min_value=1, max_value=5),
)
def test_any_interleaving_of_duplicated_deliveries_stores_each_exec_id_once(
    database: Database, deliveries: list[int], batch: int
) -> None:
    """Fills arrive from the stream and the REST reconciliation, each possibly several times, in any order
    and in batches over several transactions: every execution is stored exactly once, with its values."""
    trade_id = prefix = f"h-{next(EXAMPLES)}"
    write_order(database, trade_id)
    executions = {
        n: fill(f"{prefix}-e{n}", trade_id, qty=f"0.00{n + 1}", price=f"4321{n}.5") for n in range(8)
    }
    stream = [executions[n] for n in deliveries]
    for start in range(0, len(stream), batch):
        with database.begin() as conn:
            chunk = stream[start : start + batch]
            if len(chunk) == 1:
                ledger.record_fill(conn, chunk[0])
            else:
                ledger.record_fills(conn, chunk)
    with database.connect() as conn:
        stored = ledger.fills_for(conn, trade_id)
    assert sorted(f["exec_id"] for f in stored) == sorted({executions[n].exec_id for n in deliveries})
    for row in stored:
        n = int(row["exec_id"].rsplit("-e", 1)[1])
        assert (row["qty"], row["price"]) == (executions[n].qty, executions[n].price)


def test_the_same_exec_id_on_another_venue_or_account_is_another_execution(database: Database) -> None:
    """Regression (issue 19.1): a second simulator, or another account, numbers its executions on its
    own; with exec_id alone unique, its fills were silently dropped."""
    write_order(database)
    with database.begin() as conn:
        assert ledger.record_fill(conn, fill("E1"), venue="sim-aaaa", account="1")
        assert ledger.record_fill(conn, fill("E1"), venue="sim-bbbb", account="1")
        assert ledger.record_fill(conn, fill("E1"), venue="sim-aaaa", account="2")
        assert not ledger.record_fill(conn, fill("E1"), venue="sim-aaaa", account="1")  # a redelivery
    assert count(database, schema.fills) == 3


def test_a_different_execution_under_a_stored_key_is_a_collision_not_a_no_op(database: Database) -> None:
    write_order(database)
    write_order(database, "t-2")
    scope = {"venue": "bybit-testnet", "account": "7"}
    with database.begin() as conn:
        ledger.store_fills(conn, [{**ledger._fields(fill("E1")), **scope}])
        again = ledger.store_fills(conn, [{**ledger._fields(fill("E1")), **scope}])
        other = ledger.store_fills(conn, [{**ledger._fields(fill("E1", "t-2", price="43210.6")), **scope}])
        twice = [{**ledger._fields(fill("E9")), **scope}, {**ledger._fields(fill("E9", qty="0.1")), **scope}]
        within = ledger.store_fills(conn, twice)
    assert again.new == [] and again.collisions == []  # the same execution again: nothing to say
    assert other.new == [] and len(other.collisions) == 1
    stored, incoming = other.collisions[0]
    assert (stored["trade_id"], stored["price"]) == ("t-1", Decimal("43210.5"))
    assert (incoming["trade_id"], incoming["price"]) == ("t-2", Decimal("43210.6"))
    assert [row["exec_id"] for row in within.new] == ["E9"] and len(within.collisions) == 1
