"""The hash-chained audit log on SQLite and PostgreSQL: intact after appends (also from two processes
at once), and an edited, inserted or deleted row — tampered with raw SQL — is found and named."""

import itertools
import subprocess
import sys
from decimal import Decimal

import pytest
from sqlalchemy import text

from methtrader.audit import GENESIS_HASH, append, verify_chain
from methtrader.audit.chain import entry_hash
from methtrader.store import Database

T0 = 1_764_000_000_000
INSERT = "INSERT INTO audit_log (id, ts, kind, payload, prev_hash, hash) "
INSERT += "VALUES ({id}, :ts, 'fill', '{{}}', :p, :h)"


def fill_log(db: Database, n: int = 5) -> list:
    return [
        append(
            db,
            "order.sent" if i % 2 else "fill",
            {"trade_id": f"t-{i}", "qty": Decimal("0.001") * i},
            ts=T0 + i,
        )
        for i in range(1, n + 1)
    ]


def sql(db: Database, statement: str, **params) -> None:
    with db.begin() as conn:
        conn.execute(text(statement), params)


def test_appends_chain_and_verify(database: Database) -> None:
    assert verify_chain(database).ok and verify_chain(database).rows == 0
    entries = fill_log(database)
    assert [e.id for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[2].payload == {"trade_id": "t-3", "qty": "0.003"}
    assert entries[2].hash == entry_hash(
        3, T0 + 3, "order.sent", {"qty": "0.003", "trade_id": "t-3"}, entries[1].hash
    )
    report = verify_chain(database)
    assert report.ok and report.rows == 5 and report.last_id == 5 and report.last_hash == entries[-1].hash


def test_an_append_joins_the_callers_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError), database.begin() as conn:
        append(conn, "order.sent", {"trade_id": "t-1"})
        raise RuntimeError("the order was not written")
    assert verify_chain(database).rows == 0
    with database.begin() as conn:
        append(conn, "order.sent", {"trade_id": "t-1"})
    assert verify_chain(database).rows == 1


def test_an_edited_row_is_named(database: Database) -> None:
    fill_log(database)
    sql(database, "UPDATE audit_log SET payload = :p WHERE id = 3", p='{"qty":"999","trade_id":"t-3"}')
    broken = verify_chain(database).first_break
    assert broken is not None
    assert (broken.id, broken.kind, broken.ts, broken.problem) == (3, "order.sent", T0 + 3, "edited")
    assert str(broken).startswith("audit log row 3 (order.sent, 2025-11-24T16:00:00.003Z): edited")


def test_an_edited_and_rehashed_row_is_named(database: Database) -> None:
    entries = fill_log(database)
    rehashed = entry_hash(3, T0 + 3, "order.sent", {"qty": "999"}, entries[1].hash)
    sql(database, 'UPDATE audit_log SET payload = \'{"qty":"999"}\', hash = :h WHERE id = 3', h=rehashed)
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (3, "edited")
    assert "recomputed" in broken.reason


def test_an_edited_timestamp_is_named(database: Database) -> None:
    fill_log(database)
    sql(database, "UPDATE audit_log SET ts = ts + 1 WHERE id = 2")
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (2, "edited")


def test_a_deleted_row_is_named(database: Database) -> None:
    fill_log(database)
    sql(database, "DELETE FROM audit_log WHERE id = 3")
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (4, "deleted")
    assert "row 3 missing" in broken.reason


def test_a_deleted_row_with_renumbered_ids_is_found(database: Database) -> None:
    fill_log(database)
    sql(database, "DELETE FROM audit_log WHERE id = 3")
    sql(database, "UPDATE audit_log SET id = -id WHERE id > 3")  # two steps: no transient duplicate key
    sql(database, "UPDATE audit_log SET id = -id - 1 WHERE id < 0")
    sql(database, "UPDATE audit_chain_head SET last_id = 4")
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (3, "deleted")


def test_a_deleted_last_row_is_named(database: Database) -> None:
    fill_log(database)
    sql(database, "DELETE FROM audit_log WHERE id = 5")
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (5, "deleted")


def test_an_inserted_row_is_named(database: Database) -> None:
    entries = fill_log(database)
    sql(database, "UPDATE audit_log SET id = -id WHERE id >= 4")
    sql(database, "UPDATE audit_log SET id = -id + 1 WHERE id < 0")
    sql(
        database,
        INSERT.format(id=4),
        ts=T0 + 4,
        p="f" * 64,
        h="e" * 64,
    )
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.kind, broken.problem) == (4, "fill", "inserted")
    # a forger who links and hashes the row correctly is still caught: the next row links past it
    forged = entry_hash(4, T0 + 4, "fill", {}, entries[2].hash)
    sql(database, "UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = 4", p=entries[2].hash, h=forged)
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.problem) == (4, "inserted")
    assert "row 5 links past it" in broken.reason


def test_a_row_appended_behind_the_chains_back_is_named(database: Database) -> None:
    entries = fill_log(database)
    forged = entry_hash(6, T0 + 6, "fill", {}, entries[-1].hash)
    sql(
        database,
        INSERT.format(id=6),
        ts=T0 + 6,
        p=entries[-1].hash,
        h=forged,
    )
    broken = verify_chain(database).first_break
    assert broken is not None and (broken.id, broken.kind, broken.problem) == (6, "fill", "inserted")


APPENDER = """
import sys
from methtrader.audit import append
from methtrader.store import Database
db = Database.from_url(sys.argv[1])
for i in range(int(sys.argv[3])):
    append(db, sys.argv[2], {"i": i})
"""


def test_two_processes_appending_at_once_never_fork_the_chain(database: Database, database_url: str) -> None:
    n = 40
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, database_url, kind, str(n)], stderr=subprocess.PIPE)
        for kind in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    report = verify_chain(database)
    assert report.ok, report.first_break
    assert report.rows == 2 * n
    with database.connect() as conn:
        kinds = dict(conn.execute(text("SELECT kind, COUNT(*) FROM audit_log GROUP BY kind")).all())
    assert kinds == {"a": n, "b": n}
