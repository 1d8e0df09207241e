"""Bounded storage of refused notifications and retention (issue 9).

Revision ID: 0006
Revises: 0005

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
