"""The live runner's ledger writer: every order (with its lineage) is committed before it is sent,
events and fills as they arrive, idempotently. When the database does not answer, writes go to a
durable local journal (fsync'd JSON lines) and the runner is told (it blocks new exposure); the
journal is replayed, in order, once the database answers again — nothing lost, nothing doubled.

Every row it writes carries the session's venue and account, and every committed change appends
one audit-log entry naming each row it wrote with the SHA-256 of the row's canonical form
(`store.rowhash`), so `audit verify --log` can tell an edited, inserted or deleted row."""

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
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError

from methtrader.audit.chain import AuditEntry, remember_head
from methtrader.store import ledger, rowhash, schema
from methtrader.store.database import Database, DatabaseError, describe
from methtrader.store.direct import DirectWriter
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
        venue: str = "",
        account: str = "",
        on_incident: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self._direct = DirectWriter(db.engine)  # the write-ahead's own connection
        self.audit = audit  # appends one hash-chained audit-log entry per committed change (rows.seal)
        self.mode = mode
        self.venue = venue
        self.account = account
        self.on_incident = on_incident
        self.market_ts: int | None = None  # the latest bar's time, set by the runner
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
            "venue": self.venue,
            "account": self.account,
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
                "venue": self.venue,
                "account": self.account,
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

    def guard_change(
        self, from_state: str, to_state: str, reason: str, snapshot: dict, *, bar_ts: int | None = None
    ) -> None:
        """A guard transition, stamped with the wall clock now; `bar_ts` is the market data's time
        (default: the last bar the session saw, `market_ts`)."""
        row = {
            "ts": _now_ms(), "bar_ts": self.market_ts if bar_ts is None else bar_ts,
            "from_state": from_state, "to_state": to_state, "reason": reason, **self._scope(),
        }  # fmt: skip
        self._write([{"op": "guard", "row": {**row, "snapshot": snapshot}}])

    def control_action(self, account: str, seq: int, action: str, who: str, why: str, ts: int) -> None:
        """A person's brake or resume of `account` (the control channel's name for it) as the channel
        delivered it: stored once per (account, sequence number)."""
        row = {"seq": seq, "action": action, "who": who, "why": why, "ts": ts, "account": account}
        self._write([{"op": "control", "row": row}])

    def snapshot(self, positions: Iterable[dict[str, Any]], equity: dict[str, Any] | None, ts: int) -> None:
        """Positions (symbol, qty, cost, entry/mark price, pnl) and the account's equity at `ts`."""
        ops: list[Op] = [{"op": "position", "row": {**p, "ts": ts, **self._scope()}} for p in positions]
        if equity is not None:
            ops.append({"op": "equity", "row": {**equity, "ts": ts, **self._scope()}})
        if ops:
            self._write(ops)

    def instrument(self, row: dict[str, Any]) -> None:
        """The instrument's trading rules as the session loaded them."""
        self._write([{"op": "instrument", "row": {**row, "updated_ts": _now_ms()}}])

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

    def close(self, checkpoint: bool = False) -> None:
        """Close the journal; with `checkpoint`, fold SQLite's write-ahead log into the database
        file so the file alone is the ledger after a clean stop."""
        self._journal.close()
        self._direct.close()
        if checkpoint and self.outage is None:
            try:
                self.db.checkpoint()
            except (DatabaseError, *UNREACHABLE) as exc:
                log.warning("ledger checkpoint failed", extra={"detail": describe(exc)})
            self.db.close()

    # ------------------------------------------------------------------ internals
    def _event(self, trade_id: str, kind: str, status: str | None, payload: dict, ts: int) -> Op:
        # unique per (trade id, seq) and increasing across restarts: microseconds, never repeated
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
        row = {"trade_id": trade_id, "seq": self._last_seq, "kind": kind, "status": status, "ts": ts}
        return {"op": "event", "row": {**row, "payload": payload}}

    def _write(self, ops: list[Op]) -> None:
        if self.outage is None:
            try:
                if not (all(op["op"] in _INSERTS for op in ops) and self._commit_new(ops)):
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
        incidents: list[dict[str, Any]] = []
        sealed = None
        self._direct.memo.clear()  # the chain moves on another connection: what it knew goes
        with self.db.begin() as conn:
            summaries = []
            for op in ops:
                refs = _apply(conn, op, incidents)
                if refs:  # a replayed entry already applied adds nothing
                    summaries.append({**_summary(op), "rows": refs})
            if incidents:
                summaries.append({"op": "incident", "collisions": incidents})
            if summaries and self.audit is not None:
                sealed = self.audit(conn, "ledger", summaries)
        if isinstance(sealed, AuditEntry):
            remember_head(self._direct.memo, sealed)
        if self.observe_write is not None:
            self.observe_write(time.perf_counter() - start)
        for incident in incidents:
            self._incident(incident)

    def _commit_new(self, ops: list[Op]) -> bool:
        """The write-ahead's fast path: rows that must be new (a fresh order, its lineage, its
        events) as plain inserts sealed in one DirectWriter transaction, one round trip on
        PostgreSQL. False (nothing written) if a row was stored already or the audit chain moved
        under us: `_commit` then does it row by row, reading the chain's head under its lock."""
        start = time.perf_counter()
        planned = [_insert_of(op) for op in ops]
        refs = [rowhash.row_ref(table, row) for table, row, _ in planned]
        summaries = [{**_summary(op), "rows": [ref]} for op, ref in zip(ops, refs, strict=True)]
        while True:
            try:
                with self._direct.transaction() as batch:
                    for table, row, _ in planned:
                        batch.insert(schema.metadata.tables[table], row, None)
                    if self.audit is not None:
                        self.audit(batch, "ledger", summaries)
                break  # committed as the block ended
            except IntegrityError:
                return False
            except UNREACHABLE:
                if self._direct.fresh:
                    raise
                # the held connection died while idle (a database restart): once more, on a new one;
                # had the lost commit landed, the retry's plain inserts fail and `_commit` sorts it out
        if self.observe_write is not None:
            self.observe_write(time.perf_counter() - start)
        return True

    def _incident(self, collision: dict[str, Any]) -> None:
        stored, incoming = collision["stored"], collision["incoming"]
        message = (
            f"execution {incoming['exec_id']} of {incoming['venue'] or 'venue ?'} account "
            f"{incoming['account'] or '?'} collides with a stored different execution: stored trade "
            f"{stored['trade_id']} {stored['side']} {stored['qty']} @ {stored['price']}, received trade "
            f"{incoming['trade_id']} {incoming['side']} {incoming['qty']} @ {incoming['price']} "
            "(kept in the audit log, not in fills)"
        )
        log.error("fill collision", extra={"detail": message})
        if self.on_incident is not None:
            self.on_incident(message)

    def _scope(self) -> dict[str, str]:
        return {"venue": self.venue, "account": self.account}

    def _observe_backlog(self) -> None:
        if self.observe_backlog is not None:
            self.observe_backlog(self.backlog, self.outage is None)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_INSERTS = ("order", "lineage", "event")


def _insert_of(op: Op) -> tuple[str, dict[str, Any], list[str]]:
    """An order, lineage or event entry as (table, row, natural key): a plain insert."""
    kind = op["op"]
    if kind == "order":
        return "orders", _decimals(op["row"]), ["trade_id"]
    if kind == "lineage":
        row = {"params": {}, "risk_snapshot": {}, **op["row"]}
        row.setdefault("params_hash", ledger.params_hash(row["params"]))
        return "lineage", row, ["trade_id"]
    row = op["row"]
    event = {**row, "status": ledger.plain(row["status"]), "payload": dict(row["payload"] or {})}
    return "order_events", event, ["trade_id", "seq"]


def _apply(conn: Connection, op: Op, incidents: list[dict[str, Any]]) -> list[rowhash.RowRef]:
    """One journal entry, idempotently: the rows it wrote (none when replaying an entry already
    applied). A fill colliding with a different stored execution goes to `incidents`."""
    kind = op["op"]
    if kind in _INSERTS:
        table, row, key = _insert_of(op)
        new = ledger.insert_ignoring_duplicates(conn, schema.metadata.tables[table], [row], key)
        return [rowhash.row_ref(table, row)] if new else []
    if kind == "update":
        if not ledger.update_order(conn, op["trade_id"], **_decimals(op["values"])):
            return []
        stored = ledger.get_order(conn, op["trade_id"])
        return [rowhash.row_ref("orders", stored)] if stored is not None else []
    if kind == "fills":
        outcome = ledger.store_fills(conn, [_decimals(row) for row in op["rows"]])
        incidents.extend({"stored": a, "incoming": b} for a, b in outcome.collisions)
        return [rowhash.row_ref("fills", row) for row in outcome.new]
    if kind == "guard":
        row = {"bar_ts": None, "venue": "", "account": "", **op["row"]}
        row_id = ledger.record_guard_change(conn, **row)
        return [rowhash.row_ref("guard_state_changes", {**row, "id": row_id})]
    if kind == "control":
        row = op["row"]
        new = ledger.record_control_action(conn, **row)
        return [rowhash.row_ref("control_actions", row)] if new else []
    if kind in ("position", "equity"):
        table = "position_snapshots" if kind == "position" else "equity_snapshots"
        row = _decimals(op["row"])
        store = ledger.snapshot_position if kind == "position" else ledger.snapshot_equity
        return [rowhash.row_ref(table, {**row, "id": store(conn, **row)})]
    if kind == "instrument":
        row = _decimals(op["row"])
        ledger.upsert_instrument(conn, row, updated_ts=row["updated_ts"])
        return [rowhash.row_ref("instruments", row)]
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
        "update": ("trade_id",),
        "guard": ("ts", "bar_ts", "from_state", "to_state", "reason"),
        "control": ("account", "seq", "action", "who", "why", "ts"),
        "position": ("symbol", "qty", "ts"),
        "equity": ("balance", "equity", "ts"),
        "instrument": ("symbol", "tick_size", "qty_step"),
    }[kind]  # fmt: skip
    if kind == "update":
        return {"op": kind, "trade_id": op["trade_id"], **op["values"]}
    row = op["row"]
    return {"op": kind, **{k: row.get(k) for k in keys}}


_DECIMAL_COLUMNS = (
    "qty", "price", "fee", "realised_pnl", "filled_qty", "cost", "entry_price", "mark_price",
    "unrealised_pnl", "balance", "equity", "margin_used", "tick_size", "qty_step", "min_qty",
    "min_notional", "max_leverage", "maker_fee", "taker_fee", "maintenance_margin_rate",
)  # fmt: skip


def _decimals(row: dict[str, Any]) -> dict[str, Any]:
    """Journal lines carry decimals as strings; the ledger's money columns want Decimal."""
    return {k: Decimal(v) if k in _DECIMAL_COLUMNS and isinstance(v, str) else v for k, v in row.items()}
