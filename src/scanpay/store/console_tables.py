"""The console's tables (Alembic revision 0009): operators, their sessions, sign-in throttling,
the audit log of operator actions and alert acknowledgements.

Session tokens and passwords are never stored: a session row is keyed by the SHA-256 of its
token, a password by its Argon2id hash. Indexes that make the console's lists fast on large
tables (orders newest first, per status, by ``transaction_id``; alert and paid events by time;
notifications by outcome) are created by the same revision and declared here or on the
tables they belong to.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from scanpay.store.tables import UtcDateTime, events, metadata, notifications_received, orders
from scanpay.store.tables import payment_attempts as attempts

operators: Final = sa.Table(
    "operators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

operator_sessions: Final = sa.Table(
    "operator_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),  # the absolute limit
)

# Failed sign-ins per name (known or not, so the throttle tells nobody which names exist).
sign_in_failures: Final = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failed_at", UtcDateTime, nullable=False),
    sa.Column("locked_until", UtcDateTime, nullable=True),
)

operator_actions: Final = sa.Table(
    "operator_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=True),
    sa.Column("operator_name", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(128), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok, refused, failed
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_operator_actions_target", "target"),
)

alert_acks: Final = sa.Table(
    "alert_acks",
    metadata,
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
    sa.Column("acknowledged_at", UtcDateTime, nullable=False),
)

# (name, table, columns) of the indexes 0009 adds to existing tables for the console.
CONSOLE_INDEXES: Final = (
    ("ix_orders_created_id", orders, ("created_at", "id")),
    ("ix_orders_status_created_id", orders, ("status", "created_at", "id")),
    ("ix_orders_amount_status", orders, ("amount", "status")),
    ("ix_payment_attempts_transaction_id", attempts, ("transaction_id",)),
    ("ix_payment_attempts_status", attempts, ("status",)),
    ("ix_events_type_created", events, ("type", "created_at")),
    ("ix_notifications_received_outcome", notifications_received, ("outcome", "received_at")),
)
for _name, _table, _columns in CONSOLE_INDEXES:
    sa.Index(_name, *(_table.c[column] for column in _columns))
