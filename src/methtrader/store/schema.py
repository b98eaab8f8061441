"""The ledger's tables (SQLAlchemy 2 declarative), one schema for SQLite and PostgreSQL.

Times are UTC epoch milliseconds (`BigInteger`), as in `methtrader.model`; money and quantities are
exact `Decimal` (`Money`). Append-only tables (order events, fills, snapshots, guard changes,
control actions, the audit log) are only ever inserted into; fills are unique by (venue, account,
execution id) and order events by (trade id, sequence), so a redelivered message is stored once.
Orders, fills, snapshots, guard changes and control actions say which venue ("bybit-mainnet",
"sim-<instance>") and account (the exchange's UID) they belong to: reconciliation compares like
with like.
Migrations (`methtrader.store.migrations`) create exactly this metadata; a test compares them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from methtrader.store.types import JSONDocument, Money

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT identity on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY (a 64-bit rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")

TRADE_ID = 64  # Bybit's orderLinkId is at most 36 characters; room to spare
SHA256_HEX = 64
VENUE = 64  # "bybit-mainnet", "sim-" + a 32-hex instance id
ACCOUNT = 64  # the exchange's UID (digits), or a configured account name


def _venue() -> Mapped[str]:
    return mapped_column(String(VENUE), server_default="")


def _account() -> Mapped[str]:
    return mapped_column(String(ACCOUNT), server_default="")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InstrumentRow(Base):
    """An instrument's trading rules as last loaded from the exchange."""

    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    base_coin: Mapped[str] = mapped_column(String(16))
    quote_coin: Mapped[str] = mapped_column(String(16))
    tick_size: Mapped[Decimal] = mapped_column(Money)
    qty_step: Mapped[Decimal] = mapped_column(Money)
    min_qty: Mapped[Decimal] = mapped_column(Money)
    min_notional: Mapped[Decimal] = mapped_column(Money)
    max_leverage: Mapped[Decimal] = mapped_column(Money)
    maker_fee: Mapped[Decimal] = mapped_column(Money)
    taker_fee: Mapped[Decimal] = mapped_column(Money)
    maintenance_margin_rate: Mapped[Decimal] = mapped_column(Money)
    updated_ts: Mapped[int] = mapped_column(BigInteger)


class OrderRow(Base):
    """One order, written before it is sent; its trade id is Bybit's orderLinkId."""

    __tablename__ = "orders"
    __table_args__ = (
        Index(None, "symbol", "created_ts"),
        Index(None, "status"),
        Index(None, "venue", "account", "symbol"),
    )

    trade_id: Mapped[str] = mapped_column(String(TRADE_ID), primary_key=True)
    venue: Mapped[str] = _venue()
    account: Mapped[str] = _account()
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    time_in_force: Mapped[str] = mapped_column(String(16), default="GTC")
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal | None] = mapped_column(Money)
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(24))
    filled_qty: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reject_reason: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[str] = mapped_column(String(16), default="paper")
    strategy: Mapped[str] = mapped_column(String(128))
    params_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    created_ts: Mapped[int] = mapped_column(BigInteger)
    updated_ts: Mapped[int] = mapped_column(BigInteger)


class OrderEventRow(Base):
    """Append-only history of an order: sent, acknowledged, amended, filled, cancelled, rejected..."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("trade_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trade_id: Mapped[str] = mapped_column(String(TRADE_ID), ForeignKey("orders.trade_id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(24))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    ts: Mapped[int] = mapped_column(BigInteger)


class FillRow(Base):
    """One execution, unique by venue, account and the exchange's execution id."""

    __tablename__ = "fills"
    __table_args__ = (
        Index(None, "trade_id"),
        Index(None, "symbol", "ts"),
        UniqueConstraint("venue", "account", "exec_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue: Mapped[str] = _venue()
    account: Mapped[str] = _account()
    exec_id: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[str] = mapped_column(String(TRADE_ID))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    fee: Mapped[Decimal] = mapped_column(Money)
    liquidity: Mapped[str] = mapped_column(String(8))
    realised_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    is_liquidation: Mapped[bool] = mapped_column(Boolean, default=False)
    ts: Mapped[int] = mapped_column(BigInteger)


class PositionSnapshotRow(Base):
    """A position as the engine (or the exchange, at reconciliation) saw it at a moment."""

    __tablename__ = "position_snapshots"
    __table_args__ = (Index(None, "symbol", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue: Mapped[str] = _venue()
    account: Mapped[str] = _account()
    ts: Mapped[int] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="engine")
    qty: Mapped[Decimal] = mapped_column(Money)
    cost: Mapped[Decimal] = mapped_column(Money)
    entry_price: Mapped[Decimal | None] = mapped_column(Money)
    mark_price: Mapped[Decimal | None] = mapped_column(Money)
    realised_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unrealised_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class EquitySnapshotRow(Base):
    """The account's equity at a moment."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (Index(None, "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue: Mapped[str] = _venue()
    account: Mapped[str] = _account()
    ts: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(16), default="USDT")
    balance: Mapped[Decimal] = mapped_column(Money)
    equity: Mapped[Decimal] = mapped_column(Money)
    unrealised_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    margin_used: Mapped[Decimal | None] = mapped_column(Money)


class GuardStateChangeRow(Base):
    """A transition of the risk guard (ACTIVE / REDUCING / HALTED) with why and the risk figures.

    `ts` is wall-clock time when the change was recorded; `bar_ts` the market data's time (the bar
    being replayed or streamed) that triggered it, if any: one time base per column."""

    __tablename__ = "guard_state_changes"
    __table_args__ = (Index(None, "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    venue: Mapped[str] = _venue()
    account: Mapped[str] = _account()
    ts: Mapped[int] = mapped_column(BigInteger)
    bar_ts: Mapped[int | None] = mapped_column(BigInteger)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


class ControlActionRow(Base):
    """A human brake or resume: who, why, when, for which account, and the control channel's
    sequence number (unique per account)."""

    __tablename__ = "control_actions"
    __table_args__ = (UniqueConstraint("account", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = _account()
    seq: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    who: Mapped[str] = mapped_column(String(128))
    why: Mapped[str] = mapped_column(Text)
    ts: Mapped[int] = mapped_column(BigInteger)


class LineageRow(Base):
    """What produced an order: strategy and parameters, model run, code, features and risk state."""

    __tablename__ = "lineage"

    trade_id: Mapped[str] = mapped_column(String(TRADE_ID), ForeignKey("orders.trade_id"), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    params_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    model_run_id: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(32))
    code_commit: Mapped[str | None] = mapped_column(String(40))
    code_dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    features_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    risk_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_ts: Mapped[int] = mapped_column(BigInteger)


class AuditLogRow(Base):
    """Append-only, hash-chained: `hash` = SHA-256 of canonical JSON [id, ts, kind, payload, prev_hash].

    Ids are gapless from 1 and assigned by the appender under the chain lock; `payload` is the
    canonical JSON text that was hashed. See `methtrader.audit.chain`."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)


class AuditRefRow(Base):
    """Which audit entries concern which trade: a lookup index for `audit pull`, not evidence (the
    entries it points to are checked against their own hashes; `audit verify --log` walks them all)."""

    __tablename__ = "audit_refs"
    __table_args__ = (Index(None, "trade_id"),)

    audit_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    trade_id: Mapped[str] = mapped_column(String(TRADE_ID), primary_key=True)


class AuditChainHeadRow(Base):
    """One row (id 1): the last audit id and hash. Appenders lock it; a truncated tail shows here."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(SHA256_HEX))


metadata = Base.metadata

instruments = InstrumentRow.__table__
orders = OrderRow.__table__
order_events = OrderEventRow.__table__
fills = FillRow.__table__
position_snapshots = PositionSnapshotRow.__table__
equity_snapshots = EquitySnapshotRow.__table__
guard_state_changes = GuardStateChangeRow.__table__
control_actions = ControlActionRow.__table__
lineage = LineageRow.__table__
audit_log = AuditLogRow.__table__
audit_refs = AuditRefRow.__table__
audit_chain_head = AuditChainHeadRow.__table__
