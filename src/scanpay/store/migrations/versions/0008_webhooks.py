"""Shop-facing events, webhook endpoints and deliveries (issue 11).

Revision ID: 0008
Revises: 0007

- ``events.position`` / ``public_id`` / ``body``: set when the outbox publishes a row (in
  commit order, one publisher at a time); ``position`` orders ``GET /api/events``, and a
  shop-facing row gets its ``evt_…`` id and the exact JSON body webhooks carry. Rows that
  exist at this upgrade are marked published without a public id (history is not re-sent).
- ``webhook_endpoints``, ``webhook_deliveries``, ``webhook_attempts``: see
  :mod:`scanpay.store.webhook_tables`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("position", sa.BigInteger, nullable=True))
    op.add_column("events", sa.Column("public_id", sa.String(40), nullable=True))
    op.add_column("events", sa.Column("body", sa.Text, nullable=True))
    op.execute("UPDATE events SET position = id")
    op.create_index("uq_events_position", "events", ["position"], unique=True)
    op.create_index("uq_events_public_id", "events", ["public_id"], unique=True)
    op.create_index(
        "ix_events_unpublished",
        "events",
        ["id"],
        sqlite_where=sa.text("position IS NULL"),
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128), nullable=True),
        sa.Column("previous_until", UtcDateTime, nullable=True),
        sa.Column("event_types", sa.JSON, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("disabled_at", UtcDateTime, nullable=True),
        sa.Column("disabled_reason", sa.String(64), nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
        sa.Column(
            "endpoint_id", sa.String(40), sa.ForeignKey("webhook_endpoints.id"), nullable=False
        ),
        sa.Column("order_key", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("leased_by", sa.String(64), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_order",
        "webhook_deliveries",
        ["endpoint_id", "order_key", "event_id"],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id", sa.Integer, sa.ForeignKey("webhook_deliveries.id"), nullable=False
        ),
        sa.Column("attempted_at", UtcDateTime, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("response", sa.String(256), nullable=False),
        sa.Column("error", sa.String(128), nullable=True),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_events_unpublished", table_name="events")
    op.drop_index("uq_events_public_id", table_name="events")
    op.drop_index("uq_events_position", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("body")
        batch.drop_column("public_id")
        batch.drop_column("position")
