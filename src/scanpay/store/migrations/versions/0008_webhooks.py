"""Shop-facing events, webhook endpoints and deliveries (issue 11).

Revision ID: 0008
Revises: 0007

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
