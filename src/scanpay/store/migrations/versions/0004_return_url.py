"""The shop's return URL on orders.

Revision ID: 0004
Revises: 0003

- ``orders.return_url``: where the checkout page sends the shopper back once the order is
  settled ("Back to shop"). Optional; the shop API accepts only ``http``/``https`` URLs of
  at most 2048 characters (validated before anything is stored).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("return_url", sa.String(2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("return_url")
