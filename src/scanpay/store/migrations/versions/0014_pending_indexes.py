"""Webhook deliveries: indexes of the pending ones only, and room for HOT leases (issue 11).

Revision ID: 0014
Revises: 0013

- ``ix_webhook_deliveries_due`` (status, next_attempt_at) becomes, over pending rows only,
  the index each database's claim reads due deliveries in (and stops at its limit, rather
  than sorting every due row on each pass): ``ix_webhook_deliveries_pending``
  (next_attempt_at, id) on SQLite, ``ix_webhook_deliveries_due_by_endpoint`` (endpoint_id,
  next_attempt_at, id) on PostgreSQL, whose claim reads each endpoint's due rows.
- ``ix_webhook_deliveries_order`` becomes ``ix_webhook_deliveries_order_pending``, over
  pending rows only: an order's earliest pending event per endpoint is its first entry.
- PostgreSQL: ``fillfactor = 70`` on ``webhook_deliveries``, so the lease (which changes no
  indexed column) finds room on its page and is a HOT update. Pages written before this
  revision keep their old fill until rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_order", table_name="webhook_deliveries")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_webhook_deliveries_due_by_endpoint",
            "webhook_deliveries",
            ["endpoint_id", "next_attempt_at", "id"],
            postgresql_where=_PENDING,
        )
    else:
        op.create_index(
            "ix_webhook_deliveries_pending",
            "webhook_deliveries",
            ["next_attempt_at", "id"],
            sqlite_where=_PENDING,
        )
    op.create_index(
        "ix_webhook_deliveries_order_pending",
        "webhook_deliveries",
        ["endpoint_id", "order_key", "event_id"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_deliveries SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_deliveries RESET (fillfactor)")
        op.drop_index("ix_webhook_deliveries_due_by_endpoint", table_name="webhook_deliveries")
    else:
        op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_order_pending", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_order",
        "webhook_deliveries",
        ["endpoint_id", "order_key", "event_id"],
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
