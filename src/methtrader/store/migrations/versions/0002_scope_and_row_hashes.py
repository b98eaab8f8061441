"""Ledger rows scoped by venue and account, guard bar time, audit refs for per-trade chain lookups.

Fills become unique by (venue, account, exec_id) instead of exec_id alone (a new simulator or
account numbers its executions independently); control actions by (account, seq). Rows written
before this revision belong to venue "" and account "".

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED = ("orders", "fills", "position_snapshots", "equity_snapshots", "guard_state_changes")


def _scope_column(name: str) -> sa.Column:
    return sa.Column(name, sa.String(length=64), server_default="", nullable=False)


def upgrade() -> None:
    for table in SCOPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(_scope_column("venue"))
            batch_op.add_column(_scope_column("account"))
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_orders_venue_account_symbol"), ["venue", "account", "symbol"], unique=False
        )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_fills_exec_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_fills_venue_account_exec_id"), ["venue", "account", "exec_id"]
        )
    with op.batch_alter_table("guard_state_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bar_ts", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("control_actions", schema=None) as batch_op:
        batch_op.add_column(_scope_column("account"))
        batch_op.drop_constraint(batch_op.f("uq_control_actions_seq"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_control_actions_account_seq"), ["account", "seq"])
    op.create_table(
        "audit_refs",
        sa.Column("audit_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", "trade_id", name=op.f("pk_audit_refs")),
    )
    with op.batch_alter_table("audit_refs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_refs_trade_id"), ["trade_id"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_refs")
    with op.batch_alter_table("control_actions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_control_actions_account_seq"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_control_actions_seq"), ["seq"])
        batch_op.drop_column("account")
    with op.batch_alter_table("guard_state_changes", schema=None) as batch_op:
        batch_op.drop_column("bar_ts")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_fills_venue_account_exec_id"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_fills_exec_id"), ["exec_id"])
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_venue_account_symbol"))
    for table in SCOPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("account")
            batch_op.drop_column("venue")
