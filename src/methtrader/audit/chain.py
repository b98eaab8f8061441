"""A tamper-evident audit log: every row carries the hash of the one before it.

    entry = append(db, "brake", {"who": "ops", "why": "incident"})      # or append(conn, ...) in a txn
    report = verify_chain(db)
    if not report.ok:
        print(report.first_break)     # audit log row 7 (order.sent, 2026-...): edited: ...

Row `id` (1, 2, 3... without gaps) has `hash` = SHA-256 of the canonical JSON of
`[id, ts, kind, payload, prev_hash]`, and `prev_hash` = the previous row's hash (64 zeros for row 1).
`audit_chain_head` records the last id and hash. Editing a row breaks its hash; deleting one leaves an
id gap (or, at the end, a head pointing past the last row); inserting one breaks the next row's link
(or leaves rows after the head). The hash is unkeyed: it shows accidental or careless tampering and
any edit by someone who cannot also rewrite every later row and the head; shipping the head hash
elsewhere (bundles, logs) pins it.

Appends are serialised so two processes never fork the chain: on PostgreSQL the head row is locked
with SELECT ... FOR UPDATE; on SQLite every ledger transaction starts with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from methtrader.store import schema
from methtrader.store.database import Database, DatabaseError, describe
from methtrader.store.direct import DirectBatch
from methtrader.store.ledger import insert_ignoring_duplicates
from methtrader.store.types import canonical_json

GENESIS_HASH = "0" * 64
HEAD_ID = 1
RECENT_HASHES = 4096  # to tell an inserted row (link skips it) from deleted ones (link to nowhere)
Problem = Literal["edited", "inserted", "deleted"]


def entry_hash(id: int, ts: int, kind: str, payload: Any, prev_hash: str) -> str:
    return hashlib.sha256(canonical_json([id, ts, kind, payload, prev_hash]).encode()).hexdigest()


def _entry_hash_of_text(id: int, ts: int, kind: str, text: str, prev_hash: str) -> str:
    """`entry_hash` of a payload given as its canonical JSON text, without parsing it back: the
    canonical text of a list is its members' canonical texts joined by commas."""
    line = f"[{int(id)},{int(ts)},{canonical_json(kind)},{text},{canonical_json(prev_hash)}]"
    return hashlib.sha256(line.encode()).hexdigest()


@functools.cache
def _statements() -> tuple[Any, Any, Any]:
    """The appender's statements, built once (their compiled forms are cached by SQLAlchemy)."""
    head = schema.audit_chain_head
    lock = select(head.c.last_id, head.c.last_hash).where(head.c.id == HEAD_ID).with_for_update()
    move = (
        head.update()
        .where(head.c.id == HEAD_ID)
        .values(last_id=bindparam("new_id"), last_hash=bindparam("new_hash"))
    )
    return lock, schema.audit_log.insert(), move


def iso(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "?"
    try:
        return (
            datetime.fromtimestamp(ts_ms / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
    except (OverflowError, OSError, ValueError):
        return str(ts_ms)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: int
    kind: str
    payload: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    """The first row where the chain does not hold, and why."""

    id: int
    kind: str | None
    ts: int | None
    problem: Problem
    reason: str

    def __str__(self) -> str:
        where = f"audit log row {self.id}"
        if self.kind is not None:
            where += f" ({self.kind}, {iso(self.ts)})"
        return f"{where}: {self.problem}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ts": self.ts,
            "time": iso(self.ts) if self.ts is not None else None,
            "problem": self.problem,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ChainReport:
    rows: int
    last_id: int
    last_hash: str
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "last_id": self.last_id,
            "last_hash": self.last_hash,
            "break": self.first_break.as_dict() if self.first_break else None,
        }


# --- append ------------------------------------------------------------------------------------------
Target = Database | Connection | DirectBatch


def append(target: Target, kind: str, payload: Any, *, ts: int | None = None) -> AuditEntry:
    """Append one entry; in its own transaction for a Database, in the caller's for a Connection or
    a DirectBatch (the write-ahead's: it remembers the head it moved, so its statements and the
    COMMIT can travel together)."""
    if isinstance(target, Database):
        try:
            with target.begin() as conn:
                return append(conn, kind, payload, ts=ts)
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot append to the audit log in {target.url}: {describe(exc)}") from None
    _, insert_entry, move_head = _statements()
    current = target.memo.get(_HEAD) if isinstance(target, DirectBatch) else None
    current = current or _head(target)
    if current is None:  # the first entry of this ledger: create the head, then lock it
        first = {"id": HEAD_ID, "last_id": 0, "last_hash": GENESIS_HASH}
        if isinstance(target, DirectBatch):
            target.insert(schema.audit_chain_head, first, ["id"])
        else:
            insert_ignoring_duplicates(target, schema.audit_chain_head, [first], ["id"])
        current = _head(target)
        if current is None:  # pragma: no cover - just inserted under the write lock
            raise DatabaseError("the audit chain head vanished")
    last_id, last_hash = current
    text = canonical_json(payload)
    entry_ts = int(time.time() * 1000) if ts is None else int(ts)
    entry_id = last_id + 1
    digest = _entry_hash_of_text(entry_id, entry_ts, kind, text, last_hash)
    row = {
        "id": entry_id,
        "ts": entry_ts,
        "kind": kind,
        "payload": text,
        "prev_hash": last_hash,
        "hash": digest,
    }
    moved = {"new_id": entry_id, "new_hash": digest}
    if isinstance(target, DirectBatch):
        # the head as this connection last moved it: if another writer moved it since, the entry's
        # id is taken (a primary key violation) and the caller's transaction fails; it rolls back,
        # the memo is forgotten and the next append reads the head again, under its lock
        target.execute(insert_entry, row, columns=tuple(sorted(row)))
        target.execute(move_head, moved)
        target.memo[_HEAD] = (entry_id, digest)
    else:
        target.execute(insert_entry, row)
        target.execute(move_head, moved)
    value = json.loads(text)  # what verification will read back
    return AuditEntry(entry_id, entry_ts, kind, value, last_hash, digest)


_HEAD = "audit_chain_head"


def remember_head(memo: dict[str, Any], entry: AuditEntry) -> None:
    """After `entry` was committed on another connection: the head a DirectBatch on `memo` may use
    (if yet another writer moved it since, the append fails on the taken id and reads it anew)."""
    memo[_HEAD] = (entry.id, entry.hash)


def _head(target: Connection | DirectBatch) -> tuple[int, str] | None:
    lock = _statements()[0]
    if isinstance(target, Connection):
        found = target.execute(lock).first()
        return None if found is None else (found[0], found[1])
    pending = target.execute(lock)
    target.flush()
    return (pending.rows[0][0], pending.rows[0][1]) if pending.rows else None


# --- verify ------------------------------------------------------------------------------------------
def verify_chain(db: Database, *, batch: int = 10_000) -> ChainReport:
    """Walk the log in id order; the first broken row (edited, inserted or deleted) and why."""
    log = schema.audit_log
    try:
        with db.connect() as conn:
            head = conn.execute(
                select(schema.audit_chain_head.c.last_id, schema.audit_chain_head.c.last_hash).where(
                    schema.audit_chain_head.c.id == HEAD_ID
                )
            ).first()
            result = conn.execution_options(yield_per=batch).execute(
                select(log.c.id, log.c.ts, log.c.kind, log.c.payload, log.c.prev_hash, log.c.hash).order_by(
                    log.c.id
                )
            )
            walk = _Walk()
            for row in result:
                if walk.step(*row) is not None:
                    result.close()
                    break
            else:
                walk.finish(head)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the audit log in {db.url}: {describe(exc)}") from None
    return ChainReport(walk.rows, walk.last_id, walk.last_hash, walk.first_break)


class _Walk:
    def __init__(self) -> None:
        self.rows = 0
        self.last_id = 0
        self.last_hash = GENESIS_HASH
        self.first_break: ChainBreak | None = None
        self.recent: OrderedDict[str, tuple[int, str, int]] = OrderedDict()  # hash -> (id, kind, ts)
        self.previous: tuple[int, str | None, int | None] = (0, None, None)

    def fail(self, id: int, kind: str | None, ts: int | None, problem: Problem, reason: str) -> ChainBreak:
        self.first_break = ChainBreak(id, kind, ts, problem, reason)
        return self.first_break

    def step(
        self, id: int, ts: int, kind: str, payload: str, prev_hash: str, stored: str
    ) -> ChainBreak | None:
        expected_id = self.last_id + 1
        if id != expected_id:
            missing = f"row {expected_id}" if id == expected_id + 1 else f"rows {expected_id}-{id - 1}"
            return self.fail(id, kind, ts, "deleted", f"{missing} missing before it (ids must have no gaps)")
        if prev_hash != self.last_hash:
            skipped = self.recent.get(prev_hash)
            if skipped is not None or prev_hash == GENESIS_HASH:
                before = self.previous
                return self.fail(
                    before[0],
                    before[1],
                    before[2],
                    "inserted",
                    f"row {id} links past it (its prev_hash is the hash of row "
                    f"{skipped[0] if skipped else 0}), so row {before[0]} was inserted into the chain",
                )
            original = self._appended_as(id, ts, kind, payload, prev_hash, stored)
            if original == id:  # this row is genuine, its predecessor is not what it was appended after
                before = self.previous
                reason = f"its hash was recomputed after an edit (row {id} no longer links to it)"
                return self.fail(before[0], before[1], before[2], "edited", reason)
            if original is not None:  # a genuine row: rows before it went and the ids were closed up
                deleted = f"row {id}" if original == id + 1 else f"rows {id}-{original - 1}"
                reason = f"it was appended as row {original}: {deleted} deleted and the later ids renumbered"
                return self.fail(id, kind, ts, "deleted", reason)
            reason = f"neither its link to row {self.last_id} nor its own hash holds"
            return self.fail(id, kind, ts, "inserted", reason + ": a row that was never appended")
        if not self._own_hash_ok(id, ts, kind, payload, prev_hash, stored):
            return self.fail(id, kind, ts, "edited", "its contents do not match its hash")
        self.recent[stored] = (id, kind, ts)
        if len(self.recent) > RECENT_HASHES:
            self.recent.popitem(last=False)
        self.previous = (id, kind, ts)
        self.rows += 1
        self.last_id, self.last_hash = id, stored
        return None

    @staticmethod
    def _appended_as(id: int, ts: int, kind: str, payload: str, prev_hash: str, stored: str) -> int | None:
        """The id this row's hash was made with, when larger than its id (earlier rows were deleted)."""
        try:
            value = json.loads(payload)
        except (TypeError, ValueError):
            return None
        for candidate in range(id, id + RECENT_HASHES):
            if entry_hash(candidate, ts, kind, value, prev_hash) == stored:
                return candidate
        return None

    @staticmethod
    def _own_hash_ok(id: int, ts: int, kind: str, payload: str, prev_hash: str, stored: str) -> bool:
        try:
            value = json.loads(payload)
        except (TypeError, ValueError):
            return False
        return entry_hash(id, ts, kind, value, prev_hash) == stored

    def finish(self, head: Any) -> None:
        if head is None:
            if self.rows:
                self.fail(self.last_id, *self.previous[1:], "deleted", "the chain head record is missing")
            return
        head_id, head_hash = head
        if head_id > self.last_id:
            missing = (
                f"row {head_id}" if head_id == self.last_id + 1 else f"rows {self.last_id + 1}-{head_id}"
            )
            self.fail(
                head_id,
                None,
                None,
                "deleted",
                f"{missing} missing at the end (the chain head records {head_id})",
            )
        elif head_id < self.last_id:
            added = next(
                (row for row in self.recent.values() if row[0] == head_id + 1), (head_id + 1, None, None)
            )
            self.fail(
                *added,
                "inserted",
                f"rows {head_id + 1}-{self.last_id} were added after the recorded chain head ({head_id})",
            )
        elif head_hash != self.last_hash:
            self.fail(
                self.last_id, *self.previous[1:], "edited", "its hash differs from the chain head's record"
            )
