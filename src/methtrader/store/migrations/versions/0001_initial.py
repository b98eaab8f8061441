"""Initial ledger schema: orders, events, fills, snapshots, guard and control actions, lineage, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 07:01:33.313917
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of methtrader.store.types (a migration must not change when the code does):
# money is NUMERIC(38, 18) on PostgreSQL and exact decimal text on SQLite.
MONEY = sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_table(
        "control_actions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_actions")),
        sa.UniqueConstraint("seq", name=op.f("uq_control_actions_seq")),
    )
    op.create_table(
        "equity_snapshots",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("equity", MONEY, nullable=False),
        sa.Column("unrealised_pnl", MONEY, nullable=False),
        sa.Column("margin_used", MONEY, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
    )
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equity_snapshots_ts"), ["ts"], unique=False)

    op.create_table(
        "fills",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("exec_id", sa.String(length=64), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("liquidity", sa.String(length=8), nullable=False),
        sa.Column("realised_pnl", MONEY, nullable=False),
        sa.Column("is_liquidation", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("exec_id", name=op.f("uq_fills_exec_id")),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fills_symbol_ts"), ["symbol", "ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_fills_trade_id"), ["trade_id"], unique=False)

    op.create_table(
        "guard_state_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("snapshot", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guard_state_changes")),
    )
    with op.batch_alter_table("guard_state_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guard_state_changes_ts"), ["ts"], unique=False)

    op.create_table(
        "instruments",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("base_coin", sa.String(length=16), nullable=False),
        sa.Column("quote_coin", sa.String(length=16), nullable=False),
        sa.Column("tick_size", MONEY, nullable=False),
        sa.Column("qty_step", MONEY, nullable=False),
        sa.Column("min_qty", MONEY, nullable=False),
        sa.Column("min_notional", MONEY, nullable=False),
        sa.Column("max_leverage", MONEY, nullable=False),
        sa.Column("maker_fee", MONEY, nullable=False),
        sa.Column("taker_fee", MONEY, nullable=False),
        sa.Column("maintenance_margin_rate", MONEY, nullable=False),
        sa.Column("updated_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_instruments")),
    )
    op.create_table(
        "orders",
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("time_in_force", sa.String(length=16), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("filled_qty", MONEY, nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_orders_symbol_created_ts"), ["symbol", "created_ts"], unique=False
        )

    op.create_table(
        "position_snapshots",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("entry_price", MONEY, nullable=True),
        sa.Column("mark_price", MONEY, nullable=True),
        sa.Column("realised_pnl", MONEY, nullable=False),
        sa.Column("unrealised_pnl", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_snapshots")),
    )
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_position_snapshots_symbol_ts"), ["symbol", "ts"], unique=False)

    op.create_table(
        "lineage",
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("params", JSON_DOC, nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("model_run_id", sa.String(length=64), nullable=True),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.String(length=32), nullable=True),
        sa.Column("code_commit", sa.String(length=40), nullable=True),
        sa.Column("code_dirty", sa.Boolean(), nullable=False),
        sa.Column("features_hash", sa.String(length=64), nullable=True),
        sa.Column("risk_snapshot", JSON_DOC, nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["trade_id"], ["orders.trade_id"], name=op.f("fk_lineage_trade_id_orders")),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_lineage")),
    )
    op.create_table(
        "order_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=True),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trade_id"], ["orders.trade_id"], name=op.f("fk_order_events_trade_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("trade_id", "seq", name=op.f("uq_order_events_trade_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    op.drop_table("lineage")
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_position_snapshots_symbol_ts"))

    op.drop_table("position_snapshots")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_symbol_created_ts"))
        batch_op.drop_index(batch_op.f("ix_orders_status"))

    op.drop_table("orders")
    op.drop_table("instruments")
    with op.batch_alter_table("guard_state_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guard_state_changes_ts"))

    op.drop_table("guard_state_changes")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_trade_id"))
        batch_op.drop_index(batch_op.f("ix_fills_symbol_ts"))

    op.drop_table("fills")
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_ts"))

    op.drop_table("equity_snapshots")
    op.drop_table("control_actions")
    op.drop_table("audit_log")
    op.drop_table("audit_chain_head")
