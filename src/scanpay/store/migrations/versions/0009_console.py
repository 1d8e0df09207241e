"""The operator console: operators, sessions, sign-in throttling, audit log, alert
acknowledgements, and the indexes the console's lists need (issue 12).

Revision ID: 0009
Revises: 0008

- ``operators``: name, role (viewer / support / admin), Argon2id password hash, disabled.
- ``operator_sessions``: keyed by the SHA-256 of the session token (the token itself is only
  in the operator's cookie), with the session's CSRF token, idle and absolute limits.
- ``sign_in_failures``: failed sign-ins per name, for slowing down and locking.
- ``operator_actions``: who did what, when, from which address, with what outcome.
- ``alert_acks``: an alert event acknowledged by an operator with a note.
- Indexes: ``orders (created_at, id)`` and ``(status, created_at, id)`` for the newest-first
  list with cursor pagination and per-status counts; ``orders (amount, status)`` for amount
  ranges and their counts; ``payment_attempts.transaction_id`` for the search box;
  ``payment_attempts.status`` for open attempts; ``events (type, created_at)`` for alerts and
  the day's payments; ``notifications_received (outcome, received_at)`` for the refused
  notifications (``benchmarks/bench_console.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_orders_created_id", "orders", ["created_at", "id"]),
    ("ix_orders_status_created_id", "orders", ["status", "created_at", "id"]),
    ("ix_orders_amount_status", "orders", ["amount", "status"]),
    ("ix_payment_attempts_transaction_id", "payment_attempts", ["transaction_id"]),
    ("ix_payment_attempts_status", "payment_attempts", ["status"]),
    ("ix_events_type_created", "events", ["type", "created_at"]),
    ("ix_notifications_received_outcome", "notifications_received", ["outcome", "received_at"]),
)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_operator_sessions_operator_id", "operator_sessions", ["operator_id"])
    op.create_table(
        "sign_in_failures",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failed_at", UtcDateTime, nullable=False),
        sa.Column("locked_until", UtcDateTime, nullable=True),
    )
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=True),
        sa.Column("operator_name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_operator_actions_target", "operator_actions", ["target"])
    op.create_table(
        "alert_acks",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("acknowledged_at", UtcDateTime, nullable=False),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("alert_acks")
    op.drop_index("ix_operator_actions_target", table_name="operator_actions")
    op.drop_table("operator_actions")
    op.drop_table("sign_in_failures")
    op.drop_index("ix_operator_sessions_operator_id", table_name="operator_sessions")
    op.drop_table("operator_sessions")
    op.drop_table("operators")
