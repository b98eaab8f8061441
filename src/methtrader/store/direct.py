"""Ledger statements on a transaction's own driver connection, for the write-ahead before each order:
rendered once per statement shape, values through the columns' bind processors; on PostgreSQL the
writes go together as one statement.

    with DirectWriter(db.engine).transaction() as batch:    # or DirectBatch.of(conn) in a transaction
        batch.insert(schema.orders, row, None)              # a plain INSERT: queued on PostgreSQL
        head = batch.execute(lock_head)                      # returns rows: the queue goes first
        head.rows
    # committed here

SQLAlchemy Core's per-execute work (cache lookup, parameter set-up, result wrapping) and psycopg's
cost more than the database's own insert, and the write-ahead pays them for every row. Errors come
out as SQLAlchemy's.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from methtrader.store.ledger import upsert_statement


@dataclass(frozen=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]  # bind names in parameter order (positional styles) or all of them
    positional: bool
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    fixed: tuple[tuple[str, Any], ...]  # literal values bound in the statement itself
    writes_only: bool  # an INSERT, UPDATE or DELETE with no RETURNING

    def parameters(self, values: Mapping[str, Any]) -> Any:
        bound = dict(self.fixed)
        bound.update(values)
        for name, process in self.processors:
            if bound.get(name) is not None:
                bound[name] = process(bound[name])
        if self.positional:
            return tuple(bound[name] for name in self.names)
        return {name: bound[name] for name in self.names}


@functools.cache
def _prepare(dialect: Dialect, statement: ClauseElement, columns: tuple[str, ...] | None) -> _Prepared:
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns is not None else None)
    binds = compiled.binds
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(binds)
    processors = []
    for name, bind in binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((name, process))
    fixed = tuple((name, bind.value) for name, bind in binds.items() if bind.value is not None)
    writes = compiled.isinsert or compiled.isupdate or compiled.isdelete
    writes_only = bool(writes and not compiled.effective_returning)
    return _Prepared(str(compiled), names, positional, tuple(processors), fixed, writes_only)


@functools.cache
def _plain_insert(table: Table) -> Any:
    return table.insert().inline()  # no implicit RETURNING of a generated id


@functools.cache
def _defaults(table: Table) -> tuple[tuple[str, Any], ...]:
    """Columns with a scalar Python-side default: SQLAlchemy fills them at execution, so do we."""
    out = []
    for column in table.c:
        default = column.default
        if default is not None:
            if not default.is_scalar:  # pragma: no cover - the schema has scalar defaults only
                raise NotImplementedError(f"{table.name}.{column.name}: a callable default")
            out.append((column.name, default.arg))  # type: ignore[attr-defined]
    return tuple(out)


class Pending:
    """The result of a queued statement: its rows once the batch is flushed."""

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] | None = None
        self.rowcount = -1

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            raise RuntimeError("the batch has not been flushed")
        return self._rows


class DirectBatch:
    """Statements on a driver connection, inside the transaction it is in. On PostgreSQL the writes
    that return nothing wait in a queue and go as one statement (data-modifying WITH clauses): one
    parse, one round trip, one pass through the driver, whose per-statement work costs more than
    the server's. `DirectBatch.of(conn)` works in a SQLAlchemy transaction; `DirectWriter` holds its own."""

    def __init__(
        self, raw: Any, dialect: Dialect, memo: dict[str, Any] | None = None, *, begins: bool = False
    ) -> None:
        self.dialect = dialect
        self.memo = {} if memo is None else memo  # what its writer remembers between transactions
        self.raw = raw
        self.combining = self.dialect.name == "postgresql"
        self._queued: list[tuple[_Prepared, dict[str, Any]]] = []
        # `begins`: the connection is in autocommit mode and this batch opens its transaction,
        # lazily: a batch of writes only is then one statement, atomic on its own, no BEGIN/COMMIT
        self._begun = not begins

    @classmethod
    def of(cls, conn: Connection) -> DirectBatch:
        return cls(conn.connection.driver_connection, conn.dialect)

    def __enter__(self) -> DirectBatch:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.flush()

    def insert(
        self,
        table: Table,
        row: Mapping[str, Any],
        conflict: Sequence[str] | None,
        returning: Sequence[str] | None = None,
    ) -> Pending:
        """INSERT ... ON CONFLICT (conflict) DO NOTHING RETURNING ...: `rows` lists it only if new.
        With `conflict` None, a plain INSERT: a stored row is an IntegrityError."""
        values = dict(_defaults(table))
        values.update(row)
        if conflict is None:
            statement = _plain_insert(table)
        else:
            statement = upsert_statement(self.dialect.name, table, tuple(conflict), tuple(returning or ()))
        return self.execute(statement, values, columns=tuple(sorted(values)))

    def execute(
        self,
        statement: ClauseElement,
        values: Mapping[str, Any] | None = None,
        *,
        columns: tuple[str, ...] | None = None,
    ) -> Pending:
        """Run `statement` (or queue it, for a write with nothing to return on PostgreSQL)."""
        prepared = _prepare(self.dialect, statement, columns)
        parameters = prepared.parameters(values or {})
        pending = Pending()
        if self.combining and prepared.writes_only:
            self._queued.append((prepared, parameters))
            pending._rows = []
            return pending
        self.flush()
        self._run(prepared.sql, parameters, pending)
        return pending

    def flush(self) -> None:
        """Send the queued writes, as one statement."""
        self._send_queued(begin=True)

    def commit(self) -> None:
        """Flush, then commit the transaction the connection is in. A batch that opens its own
        and has only writes queued sends them as one statement: the server commits it as it ends."""
        if not self._begun:
            self._send_queued(begin=False)
            return
        self.flush()
        with self._translated("COMMIT"):
            self.raw.commit()

    def _send_queued(self, begin: bool) -> None:
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        if len(queued) == 1:
            self._run(queued[0][0].sql, queued[0][1], Pending(), begin)
            return
        combined: dict[str, Any] = {}
        for i, (_, parameters) in enumerate(queued):
            combined.update({f"s{i}_{name}": value for name, value in parameters.items()})
        self._run(_combined(tuple(prepared for prepared, _ in queued)), combined, Pending(), begin)

    def _run(self, sql: str, parameters: Any, pending: Pending, begin: bool = True) -> None:
        if begin and not self._begun:
            self._begun = True
            opening = "BEGIN IMMEDIATE" if self.dialect.name == "sqlite" else "BEGIN"
            with self._translated(opening):  # SQLite: take the write lock now, not at the first write
                self.raw.execute(opening)
        with self._translated(sql, parameters):
            cursor = self.raw.cursor()
            cursor.execute(sql, parameters)
            _collect(cursor, pending)

    @contextlib.contextmanager
    def _translated(self, sql: str = "", parameters: Any = None) -> Any:
        error = self.dialect.loaded_dbapi.Error
        try:
            yield
        except error as exc:  # as SQLAlchemy would raise it, so callers handle one family
            raise DBAPIError.instance(sql, parameters, exc, error) from None


_NAMED = re.compile(r"%\((\w+)\)s")


@functools.cache
def _combined(statements: tuple[_Prepared, ...]) -> str:
    """`WITH s0 AS (INSERT ...), s1 AS (UPDATE ...), ... SELECT 1`, each one's parameters renamed."""
    parts = []
    for i, prepared in enumerate(statements):
        renamed = _NAMED.sub(lambda found, i=i: f"%(s{i}_{found.group(1)})s", prepared.sql)
        parts.append(f"s{i} AS ({renamed})")
    return "WITH " + ", ".join(parts) + " SELECT 1"


def _collect(cursor: Any, pending: Pending) -> None:
    pending._rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    pending.rowcount = cursor.rowcount
    cursor.close()


class DirectWriter:
    """One held connection for the write-ahead: BEGIN, a DirectBatch, COMMIT, without a pool
    checkout and SQLAlchemy's transaction events for every order. Dropped on any error, so the
    next transaction opens a fresh one (after a database restart, say)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held: Any = None  # the pool's connection proxy
        self.memo: dict[str, Any] = {}  # per connection: forgotten with it
        self.fresh = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[DirectBatch]:
        """Commit at the end of the block (or with `batch.commit()` inside it); roll back on error.
        `fresh` says whether it opened a new connection (a held one may have died idle since)."""
        self.fresh = self._held is None
        if self._held is None:
            held = self.engine.raw_connection()
            if self.engine.dialect.name == "postgresql":
                held.driver_connection.autocommit = True  # the batch opens a transaction if it needs one
            self._held = held
        batch = DirectBatch(self._held.driver_connection, self.engine.dialect, self.memo, begins=True)
        try:
            yield batch
            batch.commit()
        except BaseException:
            self._drop(rollback=True)
            raise

    def close(self) -> None:
        self._drop(rollback=False)

    def _drop(self, rollback: bool) -> None:
        held, self._held = self._held, None
        self.memo.clear()
        if held is None:
            return
        with contextlib.suppress(Exception):
            if rollback:
                held.driver_connection.rollback()
            held.invalidate()  # never back to the pool in an unknown state
