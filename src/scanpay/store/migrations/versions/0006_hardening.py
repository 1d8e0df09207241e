"""Bounded storage of refused notifications, and indexes for retention pruning (issue 9).

Revision ID: 0006
Revises: 0005

- ``notifications_received.body_size`` / ``body_sha256``: a body refused before verification
  is kept as its first bytes (``SCANPAY_NOTIFY_REFUSED_BODY_BYTES``) in ``body`` plus its
  full size and SHA-256; NULL for a body kept whole.
- ``notifications_received.client``: the sender's address.
- Indexes on ``notifications_received.received_at``, ``events.created_at`` and
  ``idempotency_keys.created_at``: pruning looks rows up by age
  (:mod:`scanpay.store.housekeeping`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications_received", sa.Column("body_size", sa.Integer, nullable=True))
    op.add_column("notifications_received", sa.Column("body_sha256", sa.String(64), nullable=True))
    op.add_column("notifications_received", sa.Column("client", sa.String(64), nullable=True))
    op.create_index(
        "ix_notifications_received_received_at", "notifications_received", ["received_at"]
    )
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_index("ix_notifications_received_received_at", table_name="notifications_received")
    with op.batch_alter_table("notifications_received") as batch:
        batch.drop_column("client")
        batch.drop_column("body_sha256")
        batch.drop_column("body_size")
