"""Ledger statements on a transaction's own driver connection, for the write-ahead before each order:
rendered once per statement shape, values through the columns' bind processors, and on PostgreSQL
queued in psycopg's pipeline so a whole batch costs one round trip.

    with db.begin() as conn, DirectBatch(conn) as batch:
        order = batch.insert(schema.orders, row, ["trade_id"])   # queued
        head = batch.execute(lock_head)                          # queued
        batch.flush()                                            # SQLite: already run; PostgreSQL: sent
        order.rows, head.rows

SQLAlchemy Core's per-execute work (cache lookup, parameter set-up, result wrapping) costs more than
SQLite's own insert, and the write-ahead pays it for every row. Errors come out as SQLAlchemy's.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table
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
    return _Prepared(str(compiled), names, positional, tuple(processors), fixed)


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
    """Statements on the driver connection of `conn` (inside its transaction), sent together."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.raw = conn.connection.driver_connection
        self.pipelined = self.dialect.name == "postgresql"
        self._queued: list[tuple[Any, Pending, str, Any]] = []
        self.early: dict[str, Pending] = {}  # reads queued ahead by name, to share a round trip
        self._exits = contextlib.ExitStack()
        self._pipeline: Any = None

    def __enter__(self) -> DirectBatch:
        if self.pipelined:
            self._exits.enter_context(self._translated())
            self._pipeline = self._exits.enter_context(self.raw.pipeline())  # type: ignore[union-attr]
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.flush()
        self._exits.close()

    def insert(
        self,
        table: Table,
        row: Mapping[str, Any],
        conflict: Sequence[str],
        returning: Sequence[str] | None = None,
    ) -> Pending:
        """INSERT ... ON CONFLICT (conflict) DO NOTHING RETURNING ...: `rows` lists it only if new."""
        values = dict(_defaults(table))
        values.update(row)
        statement = upsert_statement(self.dialect.name, table, tuple(conflict), tuple(returning or ()))
        return self.execute(statement, values, columns=tuple(sorted(values)))

    def execute(
        self,
        statement: ClauseElement,
        values: Mapping[str, Any] | None = None,
        *,
        columns: tuple[str, ...] | None = None,
    ) -> Pending:
        prepared = _prepare(self.dialect, statement, columns)
        parameters = prepared.parameters(values or {})
        pending = Pending()
        with self._translated(prepared.sql, parameters):
            cursor = self.raw.cursor()  # type: ignore[union-attr]
            cursor.execute(prepared.sql, parameters)
            if self.pipelined:
                self._queued.append((cursor, pending, prepared.sql, parameters))
            else:
                _collect(cursor, pending)
        return pending

    def flush(self) -> None:
        """Send what is queued and read every result: one round trip on PostgreSQL."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        with self._translated(queued[-1][2], queued[-1][3]):
            self._pipeline.sync()
            for cursor, pending, _, _ in queued:
                _collect(cursor, pending)

    def commit(self) -> None:
        """Commit the caller's transaction; on PostgreSQL the COMMIT travels with what is queued,
        one round trip (the connection's own commit at the end of the block then finds nothing)."""
        if not self.pipelined:
            self.flush()
            return
        queued, self._queued = self._queued, []
        with self._translated("COMMIT"):
            self.raw.commit()  # type: ignore[union-attr]
            for cursor, pending, _, _ in queued:
                _collect(cursor, pending)

    @contextlib.contextmanager
    def _translated(self, sql: str = "", parameters: Any = None) -> Any:
        error = self.dialect.loaded_dbapi.Error
        try:
            yield
        except error as exc:  # as SQLAlchemy would raise it, so callers handle one family
            raise DBAPIError.instance(sql, parameters, exc, error) from None


def _collect(cursor: Any, pending: Pending) -> None:
    pending._rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    pending.rowcount = cursor.rowcount
    cursor.close()
