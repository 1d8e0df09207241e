"""Daily reconciliation (issue 14): reports, differences, cross-day matches, the run's lease.

Revision ID: 0011
Revises: 0010

Four new tables (see :mod:`scanpay.store.reconciliations`); nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_reports",
        sa.Column("bill_date", sa.Date, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("api_version", sa.String(4), nullable=False),
        sa.Column("bill_rows", sa.Integer, nullable=False),
        sa.Column("totals", sa.JSON, nullable=False),
        sa.Column("difference_count", sa.Integer, nullable=False),
        sa.Column("held_count", sa.Integer, nullable=False),
        sa.Column("run_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "reconciliation_differences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bill_date", sa.Date, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("entry", sa.String(8), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("out_refund_no", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.Column("local_amount", sa.BigInteger, nullable=True),
        sa.Column("remote_amount", sa.BigInteger, nullable=True),
        sa.Column("local_status", sa.String(24), nullable=True),
        sa.Column("remote_status", sa.String(24), nullable=True),
        sa.Column("local_day", sa.Date, nullable=True),
        sa.Column("note", sa.String(128), nullable=False),
    )
    op.create_index(
        "ix_reconciliation_differences_bill_date", "reconciliation_differences", ["bill_date"]
    )
    op.create_index("ix_reconciliation_differences_state", "reconciliation_differences", ["state"])
    op.create_table(
        "reconciliation_crossings",
        sa.Column("entry", sa.String(8), primary_key=True),
        sa.Column("number", sa.String(64), primary_key=True),
        sa.Column("bill_date", sa.Date, nullable=False),
        sa.Column("local_day", sa.Date, nullable=False),
    )
    op.create_index(
        "ix_reconciliation_crossings_bill_date", "reconciliation_crossings", ["bill_date"]
    )
    op.create_table(
        "reconciliation_leases",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_leases")
    op.drop_index("ix_reconciliation_crossings_bill_date", table_name="reconciliation_crossings")
    op.drop_table("reconciliation_crossings")
    op.drop_index("ix_reconciliation_differences_state", table_name="reconciliation_differences")
    op.drop_index(
        "ix_reconciliation_differences_bill_date", table_name="reconciliation_differences"
    )
    op.drop_table("reconciliation_differences")
    op.drop_table("reconciliation_reports")
