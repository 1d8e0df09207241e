"""Daily reconciliation reports and differences (issue 14).

Revision ID: 0011
Revises: 0010

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
