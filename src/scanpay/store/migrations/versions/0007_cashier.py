"""The cashier page's needs (issue 10).

Revision ID: 0007
Revises: 0006

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
