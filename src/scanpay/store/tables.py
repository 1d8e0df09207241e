"""The schema as SQLAlchemy Core tables (the Alembic migrations create exactly this)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata: Final = sa.MetaData()

orders: Final = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("description", sa.String(512), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),  # 0003: the order's deadline
    sa.Column("return_url", sa.String(2048), nullable=True),  # 0004: the shop's page
)

payment_attempts: Final = sa.Table(
    "payment_attempts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("out_trade_no", sa.String(32), nullable=False, unique=True),
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
    # 0003: payment window, the reconciler's schedule (NULL = nothing to do) and its lease
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("next_query_at", UtcDateTime, nullable=True, index=True),
    sa.Column("query_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_query_at", UtcDateTime, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("leased_by", sa.String(64), nullable=True),
    sa.Column("replaced_by", sa.String(40), nullable=True),  # the attempt made after this one
)

events: Final = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(24), nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("order_id", "seq", name="uq_events_order_seq"),
)

idempotency_keys: Final = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

notifications_received: Final = sa.Table(
    "notifications_received",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("api", sa.String(32), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("out_trade_no", sa.String(64), nullable=True, index=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.String(256), nullable=False),
    sa.Column("source_address", sa.String(64), nullable=True),  # 0009: who sent it
)
