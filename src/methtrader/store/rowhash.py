"""The canonical form of a ledger row and its SHA-256: what an audit-log entry commits to.

A row hashes the same whether computed from the values about to be inserted or read back from
SQLite or PostgreSQL: every column is present (defaults filled in), money is exact decimal text,
JSON documents are canonical JSON with integral floats as integers (JSONB prints 1e20 as an integer).
A row reference is `[table, key, sha256, trade_id]`; `key` is the row's natural key (or its id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, Column, Table

from methtrader.store import schema
from methtrader.store.types import Money, canonical_json, decimal_text, money_value

# the natural key of every ledger table the chain covers (id where a row has no other identity)
KEYS: dict[str, tuple[str, ...]] = {
    "orders": ("trade_id",),
    "lineage": ("trade_id",),
    "order_events": ("trade_id", "seq"),
    "fills": ("venue", "account", "exec_id"),
    "guard_state_changes": ("id",),
    "control_actions": ("account", "seq"),
    "position_snapshots": ("id",),
    "equity_snapshots": ("id",),
    "instruments": ("symbol",),
}
TABLES: dict[str, Table] = {name: schema.metadata.tables[name] for name in KEYS}
RowRef = list[Any]  # [table, key, sha256, trade_id or None]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _default(column: Column[Any]) -> Any:
    if column.default is not None and column.default.is_scalar:
        return column.default.arg  # type: ignore[attr-defined]
    if column.server_default is not None:
        return column.server_default.arg  # type: ignore[attr-defined]
    return None


def _columns(table: Table) -> list[tuple[str, str, Any]]:
    keyed_by_id = "id" in KEYS[table.name]
    out = []
    for column in table.c:
        if column.name == "id" and not keyed_by_id:
            continue  # a surrogate id the database assigns: not part of what the row says
        kind = "money" if isinstance(column.type, Money) else "json" if _is_json(column) else "plain"
        out.append((column.name, kind, _default(column)))
    return out


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON)


_SHAPES = {name: _columns(table) for name, table in TABLES.items()}


def canonical_row(table: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of the row, in the form both backends read back."""
    row: dict[str, Any] = {}
    for name, kind, default in _SHAPES[table]:
        value = values.get(name, default)
        if value is None:
            row[name] = None
        elif kind == "money":
            row[name] = decimal_text(money_value(value))
        elif kind == "json":
            row[name] = _json_value(json.loads(canonical_json(value)))
        elif hasattr(value, "value") and isinstance(value, str):  # a StrEnum member
            row[name] = value.value
        else:
            row[name] = value
    return row


def row_hash(table: str, values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json([table, canonical_row(table, values)]).encode()).hexdigest()


def row_key(table: str, values: Mapping[str, Any]) -> list[Any]:
    return [values[name] for name in KEYS[table]]


def row_ref(table: str, values: Mapping[str, Any]) -> RowRef:
    """`[table, key, sha256, trade_id]` for one row (trade_id None for rows of no trade)."""
    return [table, row_key(table, values), row_hash(table, values), values.get("trade_id")]


def describe_row(table: str, key: list[Any]) -> str:
    """A row as a person names it: `fills venue=sim-1f3a, account=7, exec_id=E7`."""
    names = KEYS[table]
    return f"{table} " + ", ".join(f"{name}={value}" for name, value in zip(names, key, strict=True))
