"""Several instances on PostgreSQL: a change of an order is announced with NOTIFY.

Revision ID: 0010
Revises: 0009

PostgreSQL only (SQLite has one machine and no NOTIFY): an ``AFTER UPDATE OF last_seq`` row
trigger on ``orders`` sends ``pg_notify('scanpay_orders', '<order id> <last_seq>')``, so every
writer (any instance, any version still running during a rolling upgrade, an operator's SQL)
wakes the status streams of every instance (:mod:`scanpay.store.listen`). PostgreSQL delivers
the notifications at commit, so one transaction that settles a batch of notifications takes
NOTIFY's commit lock once. The first bump of a new order (its ``created`` event, in the
transaction that inserts it) is skipped: nobody can be watching an order that does not exist
yet. Expand-only: older code runs unchanged against it.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION scanpay_order_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scanpay_orders', NEW.id || ' ' || NEW.last_seq);
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE TRIGGER scanpay_order_changed AFTER UPDATE OF last_seq ON orders
FOR EACH ROW WHEN (NEW.last_seq > OLD.last_seq AND OLD.last_seq > 0)
EXECUTE FUNCTION scanpay_order_changed()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS scanpay_order_changed ON orders")
    op.execute("DROP FUNCTION IF EXISTS scanpay_order_changed()")
