"""The ledger's rows held against the audit chain: each "ledger" entry names the rows it wrote with
the SHA-256 of their canonical form (`store.rowhash`), so an edited, inserted or deleted row shows.

    seal(conn, "ledger", [{"op": "order", ..., "rows": [row_ref("orders", row)]}])   # in the write's txn
    problems = check_ledger(db)            # every table against the whole chain (`audit verify --log`)
    problems = check_trade(conn, trade)    # one trade's rows against its entries (`audit pull`)

The latest entry naming a row is what the row must hash to now (an order is restated on each update).
`audit_refs` maps trades to their entries so a pull reads a handful of entries, not the whole log;
each entry read is checked against its own hash, and a trade with no entry at all is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from methtrader.audit.chain import AuditEntry, append, entry_hash
from methtrader.store import schema
from methtrader.store.database import Database, DatabaseError, describe
from methtrader.store.direct import DirectBatch
from methtrader.store.rowhash import KEYS, TABLES, describe_row, row_hash, row_key
from methtrader.store.types import canonical_json

RowProblemKind = Literal["edited", "inserted", "deleted"]
LEDGER_KIND = "ledger"


@dataclass(frozen=True)
class RowProblem:
    """A ledger row that disagrees with the audit chain."""

    table: str
    key: list[Any]
    problem: RowProblemKind
    audit_id: int | None  # the entry that recorded the row (None for a row no entry names)

    def __str__(self) -> str:
        row = describe_row(self.table, self.key)
        if self.problem == "inserted":
            return f"{row}: inserted: no audit log entry records this row"
        if self.problem == "deleted":
            return f"{row}: deleted: audit log row {self.audit_id} records it, the table has no such row"
        return f"{row}: edited: its content differs from what audit log row {self.audit_id} recorded"

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "key": self.key, "problem": self.problem, "audit_id": self.audit_id}


_INSERT_REF = schema.audit_refs.insert()


def seal(target: Connection | DirectBatch, kind: str, summaries: list[dict[str, Any]]) -> AuditEntry:
    """Append the entry for a committed change (in the caller's transaction) and index it by trade."""
    entry = append(target, kind, summaries)
    trades = {ref[3] for summary in summaries for ref in summary.get("rows", ()) if ref[3]}
    refs = [{"audit_id": entry.id, "trade_id": t} for t in sorted(trades)]
    if isinstance(target, DirectBatch):
        for ref in refs:
            target.execute(_INSERT_REF, ref, columns=("audit_id", "trade_id"))
    elif refs:
        target.execute(_INSERT_REF, refs)
    return entry


def _refs(payload: Any) -> Iterator[list[Any]]:
    if isinstance(payload, list):
        for summary in payload:
            if isinstance(summary, dict):
                yield from summary.get("rows", ())


def _expected(entries: Iterable[tuple[int, str]], trade_id: str | None = None) -> dict[tuple[str, str], Any]:
    """(table, canonical key) -> (sha256, audit id) of the latest entry naming each row."""
    expected: dict[tuple[str, str], Any] = {}
    for audit_id, payload in entries:
        try:
            value = json.loads(payload)
        except ValueError:
            continue  # an edited entry: the chain walk reports it
        for table, key, digest, trade in _refs(value):
            if trade_id is None or trade == trade_id:
                expected[table, canonical_json(key)] = (digest, audit_id)
    return expected


def _compare(
    expected: dict[tuple[str, str], Any], rows: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[RowProblem]:
    problems: list[RowProblem] = []
    seen: set[tuple[str, str]] = set()
    for table, row in rows:
        key = row_key(table, row)
        slot = (table, canonical_json(key))
        seen.add(slot)
        recorded = expected.get(slot)
        if recorded is None:
            problems.append(RowProblem(table, key, "inserted", None))
        elif recorded[0] != row_hash(table, row):
            problems.append(RowProblem(table, key, "edited", recorded[1]))
    for slot, (_, audit_id) in expected.items():
        if slot not in seen:
            problems.append(RowProblem(slot[0], json.loads(slot[1]), "deleted", audit_id))
    return problems


def check_ledger(db: Database, *, batch: int = 10_000) -> tuple[int, list[RowProblem]]:
    """Every row of every chained table against the chain: (rows checked, problems)."""
    log = schema.audit_log
    try:
        with db.connect() as conn:
            entries = conn.execution_options(yield_per=batch).execute(
                select(log.c.id, log.c.payload).where(log.c.kind == LEDGER_KIND).order_by(log.c.id)
            )
            expected = _expected((id, payload) for id, payload in entries)
            counted = [0]

            def rows() -> Iterator[tuple[str, Mapping[str, Any]]]:
                for name in KEYS:
                    result = conn.execution_options(yield_per=batch).execute(select(TABLES[name]))
                    for row in result.mappings():
                        counted[0] += 1
                        yield name, row

            problems = _compare(expected, rows())
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the ledger in {db.url}: {describe(exc)}") from None
    return counted[0], problems


def check_trade(
    conn: Connection,
    trade_id: str,
    order: Mapping[str, Any],
    events: list[Mapping[str, Any]],
    fills: list[Mapping[str, Any]],
    lineage: Mapping[str, Any] | None,
) -> list[str]:
    """Why the trade's rows (as read, in the caller's transaction) cannot be trusted; [] if they agree."""
    log, refs = schema.audit_log, schema.audit_refs
    ids = select(refs.c.audit_id).where(refs.c.trade_id == trade_id)
    entries = conn.execute(
        select(log.c.id, log.c.ts, log.c.kind, log.c.payload, log.c.prev_hash, log.c.hash)
        .where(log.c.id.in_(ids))
        .order_by(log.c.id)
    ).all()
    if not entries:
        return [f"trade {trade_id} is in no audit log entry: its rows were never sealed into the chain"]
    reasons = []
    for id, ts, kind, payload, prev_hash, stored in entries:
        try:
            genuine = entry_hash(id, ts, kind, json.loads(payload), prev_hash) == stored
        except ValueError:
            genuine = False
        if not genuine:
            reasons.append(
                f"audit log row {id} ({kind}) of trade {trade_id}: edited: its contents do not match its hash"
            )
    if reasons:
        return reasons
    rows: list[tuple[str, Mapping[str, Any]]] = [("orders", order)]
    rows += [("order_events", e) for e in events] + [("fills", f) for f in fills]
    if lineage is not None:
        rows.append(("lineage", lineage))
    expected = _expected(((id, payload) for id, _, _, payload, _, _ in entries), trade_id)
    return [str(problem) for problem in _compare(expected, rows)]
