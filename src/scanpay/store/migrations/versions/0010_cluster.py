"""Several instances on PostgreSQL: a change of an order is announced with NOTIFY.

Revision ID: 0010
Revises: 0009

PostgreSQL only (SQLite has one machine and no NOTIFY): a statement-level ``AFTER UPDATE``
trigger on ``orders`` sends, for the rows whose ``last_seq`` moved,
``pg_notify('scanpay_orders', '<order id> <last_seq>,<order id> <last_seq>,...')`` (split to
stay under NOTIFY's 8000 bytes), so every writer (any instance, any version still running
during a rolling upgrade, an operator's SQL) wakes the status streams of every instance
(:mod:`scanpay.store.listen`). The notification path settles a batch with one ``UPDATE``, so a
batch is one notification, and PostgreSQL delivers it at commit, taking NOTIFY's commit lock
once per transaction. The first bump of a new order (its ``created`` event, in the
transaction that inserts it) is left out: nobody can be watching an order that does not exist
yet. Expand-only: older code runs unchanged against it.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION scanpay_orders_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text := '';
    item text;
BEGIN
    FOR item IN
        SELECT n.id || ' ' || n.last_seq FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        WHERE n.last_seq > o.last_seq AND o.last_seq > 0
    LOOP
        IF length(payload) + length(item) > 7900 THEN  -- NOTIFY payloads stay under 8000 bytes
            PERFORM pg_notify('scanpay_orders', payload);
            payload := '';
        END IF;
        payload := CASE WHEN payload = '' THEN item ELSE payload || ',' || item END;
    END LOOP;
    IF payload <> '' THEN
        PERFORM pg_notify('scanpay_orders', payload);
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE TRIGGER scanpay_orders_changed AFTER UPDATE ON orders
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION scanpay_orders_changed()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS scanpay_orders_changed ON orders")
    op.execute("DROP FUNCTION IF EXISTS scanpay_orders_changed()")
