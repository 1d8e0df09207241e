"""Refunds (filled in by the refunds/v3 work).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing yet: this revision keeps its number in the chain for the work that fills it."""


def downgrade() -> None:
    """Nothing yet."""
