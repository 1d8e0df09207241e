"""Payment lifecycle: deadlines, the active-query schedule and the worker lease.

Revision ID: 0003
Revises: 0002

- ``orders.expires_at``: the order's overall deadline (after it, an unpaid order expires).
- ``payment_attempts.expires_at``: end of this attempt's payment window (its QR's life).
- ``payment_attempts.next_query_at`` / ``query_count`` / ``last_query_at``: the reconciler's
  schedule, kept in the database so it survives restarts (NULL = nothing left to do).
- ``payment_attempts.lease_until`` / ``leased_by``: the compare-and-set lease that keeps two
  workers (threads, processes or service instances) off the same attempt.
- ``payment_attempts.replaced_by``: set, by compare-and-set, in the transaction that inserts
  the next attempt of the order, so an order never gets two successors for one attempt.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("expires_at", UtcDateTime, nullable=True))
    op.add_column("payment_attempts", sa.Column("expires_at", UtcDateTime, nullable=True))
    op.add_column("payment_attempts", sa.Column("next_query_at", UtcDateTime, nullable=True))
    op.add_column(
        "payment_attempts",
        sa.Column("query_count", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("payment_attempts", sa.Column("last_query_at", UtcDateTime, nullable=True))
    op.add_column("payment_attempts", sa.Column("lease_until", UtcDateTime, nullable=True))
    op.add_column("payment_attempts", sa.Column("leased_by", sa.String(64), nullable=True))
    op.add_column("payment_attempts", sa.Column("replaced_by", sa.String(40), nullable=True))
    op.create_index("ix_payment_attempts_next_query_at", "payment_attempts", ["next_query_at"])


def downgrade() -> None:
    op.drop_index("ix_payment_attempts_next_query_at", table_name="payment_attempts")
    with op.batch_alter_table("payment_attempts") as batch:
        for name in (
            "replaced_by",
            "leased_by",
            "lease_until",
            "last_query_at",
            "query_count",
            "next_query_at",
            "expires_at",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("expires_at")
