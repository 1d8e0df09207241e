"""The reconciler's schedule and lease for refunds.

Revision ID: 0005
Revises: 0004

- ``refunds.next_query_at`` / ``query_count``: when the reconciler next asks WeChat about a
  refund still ``submitting`` (resubmitted, same ``out_refund_no``) or ``processing``
  (queried). NULL: not looked at yet; due ``query_first_delay_seconds`` after its last change.
- ``refunds.lease_until`` / ``leased_by``: the same compare-and-set lease as attempts have.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("refunds", sa.Column("next_query_at", UtcDateTime, nullable=True))
    op.add_column(
        "refunds", sa.Column("query_count", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("refunds", sa.Column("lease_until", UtcDateTime, nullable=True))
    op.add_column("refunds", sa.Column("leased_by", sa.String(64), nullable=True))
    op.create_index("ix_refunds_status", "refunds", ["status"])


def downgrade() -> None:
    op.drop_index("ix_refunds_status", table_name="refunds")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("leased_by")
        batch.drop_column("lease_until")
        batch.drop_column("query_count")
        batch.drop_column("next_query_at")
