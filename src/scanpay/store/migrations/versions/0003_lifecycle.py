"""Payment lifecycle: expiry, query schedule, worker lease (filled in by the lifecycle work).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing yet: this revision keeps its number in the chain for the work that fills it."""


def downgrade() -> None:
    """Nothing yet."""
