"""Initial schema: orders, payment attempts, events, idempotency keys, notifications.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("api_version", sa.String(4), nullable=False),
        sa.Column("appid", sa.String(64), nullable=False),
        sa.Column("mchid", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_url", sa.String(256), nullable=True),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("out_trade_no", name="uq_payment_attempts_out_trade_no"),
    )
    op.create_index("ix_payment_attempts_order_id", "payment_attempts", ["order_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("order_id", "seq", name="uq_events_order_seq"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "notifications_received",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(256), nullable=False),
    )
    op.create_index(
        "ix_notifications_received_out_trade_no", "notifications_received", ["out_trade_no"]
    )


def downgrade() -> None:
    op.drop_table("notifications_received")
    op.drop_table("idempotency_keys")
    op.drop_table("events")
    op.drop_index("ix_payment_attempts_order_id", "payment_attempts")
    op.drop_table("payment_attempts")
    op.drop_table("orders")
