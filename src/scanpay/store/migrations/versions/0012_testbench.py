"""Simulator test bench and refund closed/abnormal states (issue 15).

Revision ID: 0012
Revises: 0011

A reserved slot in the migration chain (empty until the change it names fills it in).
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
