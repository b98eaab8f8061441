"""Writes and reads of the ledger, on a connection the caller holds (so an order and its lineage
commit together). Fills and order events are idempotent: a redelivered message is stored once.

    with db.begin() as conn:
        insert_order(conn, trade_id="t-1", symbol="BTCUSDT", side="Buy", type="Limit", qty=q, price=p,
                     strategy="sma_cross", params_hash=h, created_ts=now)
        insert_lineage(conn, trade_id="t-1", strategy="sma_cross", params={...}, ...)
    with db.begin() as conn:
        record_fill(conn, fill)                                # True the first time, False after
        append_order_event(conn, "t-1", seq=1, kind="ack", status="New", payload={...}, ts=now)
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from dataclasses import fields as dataclass_fields
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_

from methtrader.store import schema
from methtrader.store.types import canonical_json


def insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], conflict_columns: Sequence[str]
) -> int:
    """INSERT ... ON CONFLICT (conflict_columns) DO NOTHING; how many rows were new."""
    return len(insert_new(conn, table, rows, conflict_columns))


def insert_new(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
    returning: Sequence[str] | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT DO NOTHING; the `returning` columns (default: the conflict columns)
    of exactly the rows that were new."""
    if not rows:
        return []
    statement = upsert_statement(conn.dialect.name, table, tuple(conflict_columns), tuple(returning or ()))
    out: list[tuple[Any, ...]] = []
    for group in _same_columns(rows):  # parameters apart from the statement: compiled once, cached
        out += [tuple(row) for row in conn.execute(statement, group).fetchall()]
    return out


def _same_columns(rows: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their column set, in order (an executemany binds one set of columns)."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(dict(row))
    return list(groups.values())


@functools.cache
def upsert_statement(
    dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    """INSERT ... ON CONFLICT (conflict) DO NOTHING RETURNING ..., built once per shape."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - resolve_url admits only the two
        raise NotImplementedError(dialect)
    # RETURNING lists exactly the new rows on both backends (rowcount is unreliable for executemany)
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(*(table.c[name] for name in (returning or conflict)))
    )


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a strategy's parameters."""
    return hashlib.sha256(canonical_json(dict(params)).encode()).hexdigest()


def _fields(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclass_fields(obj)}
    raise TypeError(f"expected a mapping or a dataclass, not {type(obj).__name__}")


def plain(value: Any) -> Any:
    """StrEnum members as their strings (Bybit's spelling)."""
    return value.value if hasattr(value, "value") and isinstance(value, str) else value


def _pick(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in values.items() if k in table.c}


# --- orders and lineage ----------------------------------------------------------------------------
def insert_order(conn: Connection, order: Any = None, /, **values: Any) -> None:
    """Write an order before it is sent: a `model.Order` (plus strategy/params_hash/mode keywords) or
    column values. Raises IntegrityError if the trade id exists (a trade id is used once)."""
    fields = {**(_fields(order) if order is not None else {}), **values}
    if "tif" in fields and "time_in_force" not in fields:
        fields["time_in_force"] = fields["tif"]
    if not fields.get("updated_ts"):
        fields["updated_ts"] = fields.get("created_ts")
    conn.execute(schema.orders.insert().values(_pick(schema.orders, fields)))


def update_order(conn: Connection, trade_id: str, **values: Any) -> bool:
    """Update an order's mutable columns (status, filled_qty, exchange_order_id, updated_ts...)."""
    table = schema.orders
    result = conn.execute(table.update().where(table.c.trade_id == trade_id).values(_pick(table, values)))
    return result.rowcount > 0


def get_order(conn: Connection, trade_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(schema.orders).where(schema.orders.c.trade_id == trade_id)).mappings().first()
    return dict(row) if row is not None else None


def insert_lineage(conn: Connection, **values: Any) -> None:
    """What produced the order `trade_id`; `params_hash` is computed from `params` when not given."""
    values.setdefault("params", {})
    values.setdefault("params_hash", params_hash(values["params"]))
    values.setdefault("risk_snapshot", {})
    conn.execute(schema.lineage.insert().values(_pick(schema.lineage, values)))


def get_lineage(conn: Connection, trade_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(schema.lineage).where(schema.lineage.c.trade_id == trade_id)).mappings().first()
    return dict(row) if row is not None else None


# --- events and fills (idempotent) ----------------------------------------------------------------
def append_order_event(
    conn: Connection,
    trade_id: str,
    *,
    seq: int,
    kind: str,
    ts: int,
    status: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> bool:
    """Append event `seq` of the order; False (and nothing written) if (trade_id, seq) is stored."""
    row = {
        "trade_id": trade_id,
        "seq": seq,
        "kind": kind,
        "status": plain(status),
        "payload": dict(payload or {}),
        "ts": ts,
    }
    return insert_ignoring_duplicates(conn, schema.order_events, [row], ["trade_id", "seq"]) == 1


def order_events(conn: Connection, trade_id: str) -> list[dict[str, Any]]:
    query = (
        select(schema.order_events)
        .where(schema.order_events.c.trade_id == trade_id)
        .order_by(schema.order_events.c.seq)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


FILL_KEY = ("venue", "account", "exec_id")
# what makes two reports of one execution the same execution (ts and pnl may be restated)
FILL_IDENTITY = ("trade_id", "symbol", "side", "qty", "price")


@dataclass
class FillsOutcome:
    """New rows as stored, and collisions: an incoming execution whose key is stored for a different
    execution (other order, side, price or qty) as (stored row, incoming row)."""

    new: list[dict[str, Any]] = field(default_factory=list)
    collisions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def record_fill(conn: Connection, fill: Any = None, /, **values: Any) -> bool:
    """Store an execution (a `model.Fill` or column values) once: False if its key is stored."""
    return record_fills(conn, [{**(_fields(fill) if fill is not None else {}), **values}]) == 1


def record_fills(conn: Connection, fills: Iterable[Any]) -> int:
    """Store executions, skipping keys already stored (and repeats within `fills`); how many new."""
    return len(store_fills(conn, fills).new)


def store_fills(conn: Connection, fills: Iterable[Any]) -> FillsOutcome:
    """Store executions once per (venue, account, exec_id), and tell apart a redelivery (the same
    execution again: nothing to do) from a collision (a different execution under a stored key)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    outcome = FillsOutcome()
    for fill in fills:
        row = _pick(schema.fills, _fields(fill))
        row.pop("id", None)
        row.setdefault("venue", "")
        row.setdefault("account", "")
        key = tuple(row[name] for name in FILL_KEY)
        first = rows.setdefault(key, row)
        if first is not row and not _same_execution(first, row):
            outcome.collisions.append((first, row))
    new = set(insert_new(conn, schema.fills, list(rows.values()), FILL_KEY))
    outcome.new = [row for key, row in rows.items() if key in new]
    repeated = {key: row for key, row in rows.items() if key not in new}
    if repeated:
        table = schema.fills
        columns = tuple_(*(table.c[name] for name in FILL_KEY))
        for before in conn.execute(select(table).where(columns.in_(list(repeated)))).mappings():
            row = repeated[tuple(before[name] for name in FILL_KEY)]
            if not _same_execution(before, row):
                outcome.collisions.append((dict(before), row))
    return outcome


def _same_execution(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(_comparable(a.get(name)) == _comparable(b.get(name)) for name in FILL_IDENTITY)


def _comparable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    return plain(value)


def fills_for(conn: Connection, trade_id: str) -> list[dict[str, Any]]:
    query = select(schema.fills).where(schema.fills.c.trade_id == trade_id).order_by(schema.fills.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]


# --- snapshots, guard and control ------------------------------------------------------------------
def upsert_instrument(conn: Connection, instrument: Any, *, updated_ts: int) -> None:
    """Store an instrument's current trading rules (replacing what was stored for its symbol)."""
    values = _pick(schema.instruments, {**_fields(instrument), "updated_ts": updated_ts})
    conn.execute(schema.instruments.delete().where(schema.instruments.c.symbol == values["symbol"]))
    conn.execute(schema.instruments.insert().values(values))


def snapshot_position(conn: Connection, **values: Any) -> int:
    """A position at a moment (venue, account, symbol, qty, cost...); the new row's id."""
    return _insert_returning_id(conn, schema.position_snapshots, values)


def snapshot_equity(conn: Connection, **values: Any) -> int:
    """The account's balance and equity at a moment; the new row's id."""
    return _insert_returning_id(conn, schema.equity_snapshots, values)


def record_guard_change(
    conn: Connection,
    *,
    ts: int,
    from_state: str,
    to_state: str,
    reason: str = "",
    snapshot: Any = None,
    bar_ts: int | None = None,
    venue: str = "",
    account: str = "",
) -> int:
    """A guard transition: `ts` wall-clock, `bar_ts` the market data's time; the new row's id."""
    values = {
        "ts": ts, "bar_ts": bar_ts, "from_state": from_state, "to_state": to_state, "reason": reason,
        "snapshot": snapshot or {}, "venue": venue, "account": account,
    }  # fmt: skip
    return _insert_returning_id(conn, schema.guard_state_changes, values)


def record_control_action(
    conn: Connection, *, seq: int, action: str, who: str, why: str, ts: int, account: str = ""
) -> bool:
    """A brake or resume, once per (account, control-channel sequence number)."""
    row = {"account": account, "seq": seq, "action": action, "who": who, "why": why, "ts": ts}
    return insert_ignoring_duplicates(conn, schema.control_actions, [row], ["account", "seq"]) == 1


def _insert_returning_id(conn: Connection, table: Table, values: Mapping[str, Any]) -> int:
    statement = table.insert().values(_pick(table, values)).returning(table.c.id)
    return int(conn.execute(statement).scalar_one())
