"""The active-query log (issue 12: "active queries and their answers").

Revision ID: 0013
Revises: 0012

``payment_queries``: one row per query scanpay made to WeChat Pay about a payment attempt
(who asked, API version, WeChat's trade_state or the error, transaction_id, and the verdict
scanpay reached); see :mod:`scanpay.store.query_log`. Indexed by order (the console's
timeline) and by time (retention pruning).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scanpay.store.tables import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_queries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("out_trade_no", sa.String(32), nullable=False),
        sa.Column("asked_at", UtcDateTime, nullable=False),
        sa.Column("asker", sa.String(16), nullable=False),
        sa.Column("api_version", sa.String(8), nullable=False),
        sa.Column("trade_state", sa.String(32), nullable=True),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("error", sa.String(128), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_payment_queries_order", "payment_queries", ["order_id", "asked_at"])
    op.create_index("ix_payment_queries_asked_at", "payment_queries", ["asked_at"])


def downgrade() -> None:
    op.drop_index("ix_payment_queries_asked_at", table_name="payment_queries")
    op.drop_index("ix_payment_queries_order", table_name="payment_queries")
    op.drop_table("payment_queries")
