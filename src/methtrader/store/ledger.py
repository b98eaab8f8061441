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

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields as dataclass_fields
from dataclasses import is_dataclass
from typing import Any

from sqlalchemy import Connection, Table, select

from methtrader.store import schema
from methtrader.store.types import canonical_json


def insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], conflict_columns: Sequence[str]
) -> int:
    """INSERT ... ON CONFLICT (conflict_columns) DO NOTHING; how many rows were new."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - resolve_url admits only the two
        raise NotImplementedError(conn.dialect.name)
    statement = (
        insert(table)
        .values([dict(row) for row in rows])
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(*(table.c[name] for name in conflict_columns))
    )  # RETURNING lists exactly the new rows on both backends (rowcount is unreliable for multi-VALUES)
    return len(conn.execute(statement).fetchall())


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a strategy's parameters."""
    return hashlib.sha256(canonical_json(dict(params)).encode()).hexdigest()


def _fields(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclass_fields(obj)}
    raise TypeError(f"expected a mapping or a dataclass, not {type(obj).__name__}")


def _plain(value: Any) -> Any:
    """StrEnum members as their strings (Bybit's spelling)."""
    return value.value if hasattr(value, "value") and isinstance(value, str) else value


def _pick(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in values.items() if k in table.c}


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
        "status": _plain(status),
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


def record_fill(conn: Connection, fill: Any = None, /, **values: Any) -> bool:
    """Store an execution (a `model.Fill` or column values) once: False if its exec_id is stored."""
    return record_fills(conn, [{**(_fields(fill) if fill is not None else {}), **values}]) == 1


def record_fills(conn: Connection, fills: Iterable[Any]) -> int:
    """Store executions, skipping exec_ids already stored (and repeats within `fills`); how many new."""
    rows: dict[str, dict[str, Any]] = {}
    for fill in fills:
        row = _pick(schema.fills, _fields(fill))
        row.pop("id", None)
        rows.setdefault(row["exec_id"], row)
    return insert_ignoring_duplicates(conn, schema.fills, list(rows.values()), ["exec_id"])


def fills_for(conn: Connection, trade_id: str) -> list[dict[str, Any]]:
    query = select(schema.fills).where(schema.fills.c.trade_id == trade_id).order_by(schema.fills.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]


# --- snapshots, guard and control ------------------------------------------------------------------
def upsert_instrument(conn: Connection, instrument: Any, *, updated_ts: int) -> None:
    """Store an instrument's current trading rules (replacing what was stored for its symbol)."""
    values = _pick(schema.instruments, {**_fields(instrument), "updated_ts": updated_ts})
    conn.execute(schema.instruments.delete().where(schema.instruments.c.symbol == values["symbol"]))
    conn.execute(schema.instruments.insert().values(values))


def snapshot_position(conn: Connection, **values: Any) -> None:
    conn.execute(schema.position_snapshots.insert().values(_pick(schema.position_snapshots, values)))


def snapshot_equity(conn: Connection, **values: Any) -> None:
    conn.execute(schema.equity_snapshots.insert().values(_pick(schema.equity_snapshots, values)))


def record_guard_change(
    conn: Connection, *, ts: int, from_state: str, to_state: str, reason: str = "", snapshot: Any = None
) -> None:
    conn.execute(
        schema.guard_state_changes.insert().values(
            ts=ts,
            from_state=_plain(from_state),
            to_state=_plain(to_state),
            reason=reason,
            snapshot=snapshot or {},
        )
    )


def record_control_action(conn: Connection, *, seq: int, action: str, who: str, why: str, ts: int) -> bool:
    """A brake or resume, once per control-channel sequence number."""
    row = {"seq": seq, "action": action, "who": who, "why": why, "ts": ts}
    return insert_ignoring_duplicates(conn, schema.control_actions, [row], ["seq"]) == 1
