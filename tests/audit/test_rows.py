"""Issue 19.3: the audit chain commits to every ledger row it records. Edits, inserts and deletes of
orders, events, fills, lineage, guard changes, control actions and snapshots made straight in the
database are named by `audit verify --log` (exit 1), and `audit pull` refuses such a trade (exit 1),
on SQLite and PostgreSQL. Before row hashes, all of these passed as "intact"."""

from decimal import Decimal

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from methtrader.audit.rows import check_ledger, seal
from methtrader.cli.main import app
from methtrader.engine.recorder import LedgerRecorder
from methtrader.model import Fill, Liquidity, Order, OrderType, Side
from methtrader.store import Database

runner = CliRunner()
T0 = 1_764_000_000_000
LINEAGE = {
    "strategy": "sma_cross",
    "params": {"fast": 2},
    "params_hash": "h" * 64,
    "risk_snapshot": {"var": 1.5},
}


def session(database: Database, tmp_path) -> LedgerRecorder:
    """What a paper session writes: an order, its events and two fills, a guard change, a brake,
    snapshots and the instrument, through the recorder that seals each change into the chain."""
    recorder = LedgerRecorder(
        database, tmp_path / "journal.jsonl", audit=seal, venue="sim-ab12", account="42"
    )
    recorder.order(Order("mt-1", "BTCUSDT", Side.BUY, Decimal("0.100"), OrderType.MARKET), LINEAGE, ts=T0)
    recorder.event("mt-1", "acknowledged", "New", {"order_id": "X1"}, T0 + 1, {"exchange_order_id": "X1"})
    recorder.fills(
        Fill(f"E{i}", "mt-1", "BTCUSDT", Side.BUY, Decimal("0.050"), Decimal("9123.4"), Decimal("0.01"),
             Liquidity.TAKER, T0 + 2)
        for i in (1, 2)
    )  # fmt: skip
    recorder.event("mt-1", "filled", "Filled", {}, T0 + 3, {"status": "Filled", "filled_qty": Decimal("0.1")})
    recorder.market_ts = T0
    recorder.guard_change("ACTIVE", "HALTED", "brake: incident (by ops)", {"var": 12.5})
    recorder.control_action("default", 1, "brake", "ops", "incident", T0 + 4)
    recorder.snapshot(
        [
            {
                "symbol": "BTCUSDT",
                "qty": Decimal("0.1"),
                "cost": Decimal("912.34"),
                "mark_price": Decimal("9123.4"),
            }
        ],
        {"balance": Decimal("10000"), "equity": Decimal("9999.9")},
        T0 + 5,
    )
    return recorder


TAMPERING = [
    ("UPDATE orders SET qty = '5'", "orders trade_id=mt-1: edited"),
    (
        "UPDATE fills SET price = '1' WHERE exec_id = 'E2'",
        "fills venue=sim-ab12, account=42, exec_id=E2: edited",
    ),
    ("DELETE FROM fills WHERE exec_id = 'E1'", "fills venue=sim-ab12, account=42, exec_id=E1: deleted"),
    (
        "INSERT INTO fills (venue, account, exec_id, trade_id, symbol, side, qty, price, fee, liquidity,"
        " realised_pnl, is_liquidation, ts) VALUES ('sim-ab12', '42', 'E3', 'mt-1', 'BTCUSDT', 'Buy',"
        " '1', '1', '0', 'Taker', '0', false, 1)",
        "fills venue=sim-ab12, account=42, exec_id=E3: inserted",
    ),
    ("UPDATE order_events SET kind = 'cancelled' WHERE kind = 'filled'", "order_events trade_id=mt-1, seq="),
    ("UPDATE lineage SET code_commit = 'deadbeef'", "lineage trade_id=mt-1: edited"),
    ("UPDATE guard_state_changes SET reason = 'nothing'", "guard_state_changes id=1: edited"),
    ("UPDATE control_actions SET who = 'someone else'", "control_actions account=default, seq=1: edited"),
    ("DELETE FROM position_snapshots", "position_snapshots id=1: deleted"),
    ("UPDATE equity_snapshots SET equity = '1000000'", "equity_snapshots id=1: edited"),
]


@pytest.mark.parametrize(("statement", "named"), TAMPERING, ids=[t[1].split(":")[0] for t in TAMPERING])
def test_verify_log_names_each_tampered_row(
    database: Database, database_url: str, tmp_path, statement, named
):
    session(database, tmp_path)
    checked, problems = check_ledger(database)
    assert problems == [] and checked == 11  # order, lineage, 3 events, 2 fills, guard, control, 2 snapshots
    ok = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert ok.exit_code == 0 and "11 ledger rows agree" in ok.stdout, ok.output
    with database.begin() as conn:
        conn.execute(text(statement))
    tampered = runner.invoke(app, ["audit", "verify", "--log", "--url", database_url])
    assert tampered.exit_code == 1, tampered.output
    assert f"TAMPERED: {named}" in tampered.stderr


@pytest.mark.parametrize(
    "statement", ["UPDATE orders SET qty = '5'", "UPDATE fills SET price = '1' WHERE exec_id = 'E2'",
                  "DELETE FROM fills WHERE exec_id = 'E1'"]
)  # fmt: skip
def test_pull_refuses_a_trade_whose_rows_disagree_with_the_chain(database, database_url, tmp_path, statement):
    session(database, tmp_path)
    args = ["audit", "pull", "mt-1", "--url", database_url, "--tracking-uri", "http://127.0.0.1:9"]
    good = runner.invoke(app, [*args, "--out", str(tmp_path / "good")])
    assert good.exit_code == 0, good.output
    with database.begin() as conn:
        conn.execute(text(statement))
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "bad")])
    assert refused.exit_code == 1, refused.output
    assert "REFUSED: trade mt-1 disagrees with the audit chain" in refused.stderr
    assert (
        "fills venue=sim-ab12" if "fills" in statement else "orders trade_id=mt-1: edited"
    ) in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_an_order_written_ahead_twice_is_stored_and_sealed_once(database: Database, tmp_path):
    """The write-ahead's fast path assumes its rows are new; when one is not (a retried write), it
    writes nothing and the row-by-row path records only what is new, so the chain still agrees."""
    recorder = LedgerRecorder(
        database, tmp_path / "journal.jsonl", audit=seal, venue="sim-ab12", account="42"
    )
    order = Order("mt-7", "BTCUSDT", Side.SELL, Decimal("0.2"), OrderType.LIMIT, price=Decimal("9000.5"))
    recorder.order(order, LINEAGE, ts=T0)
    recorder.order(order, LINEAGE, ts=T0)  # the same order again: lineage and order stored already
    with database.connect() as conn:
        entries = conn.execute(text("SELECT payload FROM audit_log ORDER BY id")).scalars().all()
        events = conn.execute(text("SELECT count(*) FROM order_events")).scalar_one()
    assert len(entries) == 2 and events == 2  # the second write-ahead: a new 'created' event only
    assert '"op":"order"' in entries[0] and '"op":"order"' not in entries[1]
    assert check_ledger(database) == (4, [])


def test_two_writers_on_one_ledger_keep_one_chain(database: Database, tmp_path):
    """Each write-ahead remembers the chain head it moved; when another session moved it since, the
    remembered id is taken, the write falls back to reading the head under its lock, and the chain
    stays one line with every row agreeing."""
    one = LedgerRecorder(database, tmp_path / "one.jsonl", audit=seal, venue="sim-ab12", account="1")
    two = LedgerRecorder(database, tmp_path / "two.jsonl", audit=seal, venue="sim-ab12", account="2")
    for i in range(3):
        for name, recorder in (("a", one), ("b", two)):
            recorder.order(
                Order(f"{name}-{i}", "BTCUSDT", Side.BUY, Decimal("0.1"), OrderType.MARKET), LINEAGE, T0
            )
    with database.connect() as conn:
        orders = conn.execute(text("SELECT count(*) FROM orders")).scalar_one()
        entries = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    assert orders == 6 and entries == 6
    assert check_ledger(database) == (18, [])
    ok = runner.invoke(
        app, ["audit", "verify", "--log", "--url", database.engine.url.render_as_string(False)]
    )
    assert ok.exit_code == 0, ok.output
    one.close(), two.close()
