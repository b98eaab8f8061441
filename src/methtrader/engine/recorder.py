"""The live runner's ledger writer: every order (with its lineage) is committed before it is sent,
events and fills as they arrive, idempotently. When the database does not answer, writes go to a
durable local journal (fsync'd JSON lines) and the runner is told (it blocks new exposure); the
journal is replayed, in order, once the database answers again — nothing lost, nothing doubled."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from methtrader.store import ledger, schema
from methtrader.store.database import Database, describe
from methtrader.store.types import canonical_json

if TYPE_CHECKING:
    from methtrader.model import Fill, Order

log = logging.getLogger(__name__)
Op = dict[str, Any]
# the database is not answering (as opposed to a write it refuses: that is a bug, and it raises)
UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError)


class LedgerRecorder:
    """Writes through to `db`, or to the journal at `journal_path` while `db` is unreachable.

    `on_outage(reason)` is called once when writes start going to the journal, `on_recovered()`
    once the journal has been replayed; `observe` hooks receive write latency and journal size."""

    def __init__(
        self,
        db: Database,
        journal_path: Path,
        *,
        mode: str = "paper",
        on_outage: Callable[[str], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
        observe_write: Callable[[float], None] | None = None,
        observe_backlog: Callable[[int, bool], None] | None = None,
        audit: Callable[[Connection, str, Any], Any] | None = None,
    ) -> None:
        self.db = db
        self.audit = audit  # appends one hash-chained audit-log entry per committed change
        self.mode = mode
        self.journal_path = journal_path
        self.on_outage = on_outage
        self.on_recovered = on_recovered
        self.observe_write = observe_write
        self.observe_backlog = observe_backlog
        self._last_seq = 0
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        self._journal = journal_path.open("a", encoding="utf-8")
        self.backlog = sum(1 for _ in journal_path.open(encoding="utf-8"))
        self.outage: str | None = "journal not yet replayed" if self.backlog else None

    # ------------------------------------------------------------------ what the runner records
    def order(self, order: Order, lineage: dict[str, Any], ts: int) -> None:
        """Before the order is sent: the order row, its lineage and its first event, together."""
        row = {
            "trade_id": order.trade_id,
            "symbol": order.symbol,
            "side": str(order.side),
            "type": str(order.type),
            "time_in_force": str(order.tif),
            "qty": order.qty,
            "price": order.price,
            "reduce_only": order.reduce_only,
            "status": str(order.status),
            "mode": self.mode,
            "strategy": lineage["strategy"],
            "params_hash": lineage["params_hash"],
            "created_ts": ts,
            "updated_ts": ts,
        }
        self._write(
            [
                {"op": "order", "row": row},
                {"op": "lineage", "row": {**lineage, "trade_id": order.trade_id, "created_ts": ts}},
                self._event(order.trade_id, "created", str(order.status), {}, ts),
            ]
        )

    def event(
        self,
        trade_id: str,
        kind: str,
        status: str | None,
        payload: dict[str, Any],
        ts: int,
        update: dict[str, Any] | None = None,
    ) -> None:
        """An order event; `update` also sets the order's columns (status, exchange id, filled qty)."""
        ops = [self._event(trade_id, kind, status, payload, ts)]
        if update:
            ops.append({"op": "update", "trade_id": trade_id, "values": {**update, "updated_ts": ts}})
        self._write(ops)

    def fills(self, fills: Iterable[Fill]) -> None:
        rows = [
            {
                "exec_id": f.exec_id,
                "trade_id": f.trade_id,
                "symbol": f.symbol,
                "side": str(f.side),
                "qty": f.qty,
                "price": f.price,
                "fee": f.fee,
                "liquidity": str(f.liquidity),
                "realised_pnl": f.realised_pnl,
                "is_liquidation": f.is_liquidation,
                "ts": f.ts,
            }
            for f in fills
        ]
        if rows:
            self._write([{"op": "fills", "rows": rows}])

    def guard_change(self, ts: int, from_state: str, to_state: str, reason: str, snapshot: dict) -> None:
        row = {"ts": ts, "from_state": from_state, "to_state": to_state, "reason": reason}
        self._write([{"op": "guard", "row": {**row, "snapshot": snapshot}}])

    # ------------------------------------------------------------------ outage and replay
    def replay(self) -> bool:
        """Apply the journal to the database in one transaction; True when it is empty afterwards."""
        if not self.backlog:
            return True
        lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        ops = [json.loads(line) for line in lines if line]
        try:
            self._commit(ops)
        except UNREACHABLE as exc:
            log.warning("journal replay failed", extra={"detail": describe(exc), "backlog": self.backlog})
            return False
        self._journal.close()
        with self.journal_path.open("w", encoding="utf-8") as emptied:
            os.fsync(emptied.fileno())
        self._journal = self.journal_path.open("a", encoding="utf-8")
        log.warning("journal replayed into the database", extra={"events": len(ops)})
        self.backlog = 0
        self.outage = None
        self._observe_backlog()
        if self.on_recovered is not None:
            self.on_recovered()
        return True

    def mark_outage(self, reason: str) -> None:
        """The database stopped answering (a failed write, or a health probe): journal from now on."""
        if self.outage is not None:
            return
        self.outage = reason
        log.error("database unreachable: journaling", extra={"detail": reason})
        self._observe_backlog()
        if self.on_outage is not None:
            self.on_outage(reason)

    def close(self) -> None:
        self._journal.close()

    # ------------------------------------------------------------------ internals
    def _event(self, trade_id: str, kind: str, status: str | None, payload: dict, ts: int) -> Op:
        # unique per (trade id, seq) and increasing across restarts: microseconds, never repeated
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        row = {"trade_id": trade_id, "seq": self._last_seq, "kind": kind, "status": status, "ts": ts}
        return {"op": "event", "row": {**row, "payload": payload}}

    def _write(self, ops: list[Op]) -> None:
        if self.outage is None:
            try:
                self._commit(ops)
                return
            except UNREACHABLE as exc:
                self.mark_outage(describe(exc))
        for op in ops:  # committed to the journal: durable before we go on
            self._journal.write(canonical_json(op) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.backlog += len(ops)
        self._observe_backlog()

    def _commit(self, ops: list[Op]) -> None:
        start = time.perf_counter()
        with self.db.begin() as conn:
            changed = [op for op in ops if _apply(conn, op)]
            if changed and self.audit is not None:  # a replayed entry already applied adds nothing
                self.audit(conn, "ledger", [_summary(op) for op in changed])
        if self.observe_write is not None:
            self.observe_write(time.perf_counter() - start)

    def _observe_backlog(self) -> None:
        if self.observe_backlog is not None:
            self.observe_backlog(self.backlog, self.outage is None)


def _apply(conn: Connection, op: Op) -> bool:
    """One journal entry, idempotently: replaying an entry already applied changes nothing (False)."""
    kind = op["op"]
    if kind == "order":
        return (
            ledger.insert_ignoring_duplicates(conn, schema.orders, [_decimals(op["row"])], ["trade_id"]) > 0
        )
    if kind == "lineage":
        row = {"params": {}, "risk_snapshot": {}, **op["row"]}
        row.setdefault("params_hash", ledger.params_hash(row["params"]))
        return ledger.insert_ignoring_duplicates(conn, schema.lineage, [row], ["trade_id"]) > 0
    if kind == "event":
        row = op["row"]
        return ledger.append_order_event(
            conn, row["trade_id"], seq=row["seq"], kind=row["kind"], ts=row["ts"], status=row["status"],
            payload=row["payload"],
        )  # fmt: skip
    if kind == "update":
        ledger.update_order(conn, op["trade_id"], **_decimals(op["values"]))
        return False  # an update restates what the order's events (audited) already say
    if kind == "fills":
        return ledger.record_fills(conn, [_decimals(row) for row in op["rows"]]) > 0
    if kind == "guard":
        ledger.record_guard_change(conn, **op["row"])
        return True
    raise ValueError(f"unknown journal entry {kind!r}")


def _summary(op: Op) -> dict[str, Any]:
    """What the audit log says of a change: its identity and the figures a reviewer checks."""
    kind = op["op"]
    if kind == "fills":
        keep = ("exec_id", "trade_id", "side", "qty", "price", "fee", "ts")
        return {"op": kind, "fills": [{k: row[k] for k in keep} for row in op["rows"]]}
    keys = {
        "order": ("trade_id", "symbol", "side", "type", "qty", "price", "reduce_only", "strategy",
                  "params_hash"),
        "lineage": ("trade_id", "strategy", "params_hash", "code_commit", "code_dirty", "model_run_id",
                    "model_version", "features_hash", "risk_snapshot"),
        "event": ("trade_id", "seq", "kind", "status", "ts"),
        "guard": ("ts", "from_state", "to_state", "reason"),
    }[kind]  # fmt: skip
    row = op["row"]
    return {"op": kind, **{k: row.get(k) for k in keys}}


_DECIMAL_COLUMNS = ("qty", "price", "fee", "realised_pnl", "filled_qty")


def _decimals(row: dict[str, Any]) -> dict[str, Any]:
    """Journal lines carry decimals as strings; the ledger's money columns want Decimal."""
    return {k: Decimal(v) if k in _DECIMAL_COLUMNS and isinstance(v, str) else v for k, v in row.items()}
