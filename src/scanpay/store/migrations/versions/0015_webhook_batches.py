"""Webhook batches: a worker's new deliveries, one row per pass (issue 11, PostgreSQL).

Revision ID: 0015
Revises: 0014

``webhook_batches`` holds the (event, endpoint) pairs a delivery worker took as it
published, until each has its ``webhook_deliveries`` row (written when its first attempt
is recorded). SQLite keeps writing a pending row per delivery and leaves the table empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("lease_until", UtcDateTime, nullable=False),
        sa.Column("first_event", sa.Integer, nullable=False),
        sa.Column(
            "event_ids", sa.ARRAY(sa.Integer).with_variant(sa.JSON(), "sqlite"), nullable=False
        ),
        sa.Column(
            "endpoint_ids",
            sa.ARRAY(sa.String(40)).with_variant(sa.JSON(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_batches")
