"""Several instances on PostgreSQL (issue 13).

Revision ID: 0010
Revises: 0009

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
