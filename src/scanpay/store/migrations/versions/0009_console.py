"""Operators, sessions, audit log and alert acknowledgements (issue 12).

Revision ID: 0009
Revises: 0008

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
