"""Webhook endpoints, deliveries and delivery attempts (Alembic revision 0008).

A delivery is one event for one endpoint: ``pending`` until a 2xx (``delivered``), the end
of the retry schedule or a 410 (``failed``), or the endpoint's removal (``cancelled``). Its
``next_attempt_at`` and the lease (``lease_until``/``leased_by``) live here, so a restarted or
second instance carries on. Every HTTP attempt leaves a ``webhook_attempts`` row.

Two indexes cover only the pending deliveries (revision 0014), so a delivery that is done
leaves them and the claim's work follows what is waiting, not everything ever sent: the due
order the claim reads in (one index per database, below), and each order's earliest pending
event per endpoint. A query must write the status out (:func:`pending`) for SQLite and
PostgreSQL to use them (neither proves a partial index's predicate from a bound
parameter). On PostgreSQL the table leaves 30% of each page free (fillfactor 70): a lease
changes no indexed column, so with room on its page it is a HOT update (no index entries).
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa

from scanpay.store.tables import UtcDateTime, metadata

webhook_endpoints: Final = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("previous_secret", sa.String(128), nullable=True),  # signs too, until:
    sa.Column("previous_until", UtcDateTime, nullable=True),
    sa.Column("event_types", sa.JSON, nullable=True),  # None: every type
    sa.Column("source", sa.String(16), nullable=False),  # "settings" or "api"
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime, nullable=True),
    sa.Column("disabled_reason", sa.String(64), nullable=True),
)

IS_PENDING: Final = sa.text("status = 'pending'")


def pending(status: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``status = 'pending'`` with the value written out, as the partial indexes say it."""
    return status == sa.literal_column("'pending'")


webhook_deliveries: Final = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    sa.Column("order_key", sa.String(40), nullable=True),  # the event's order: delivered in order
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("leased_by", sa.String(64), nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    postgresql_with={"fillfactor": 70},
)
D: Final = webhook_deliveries.c
# The due rows in due order, ties by id: SQLite's claim reads them in this order over all
# endpoints; PostgreSQL's reads each endpoint's (a LATERAL per endpoint, which SQLite has
# not), so each database has the one index its claim reads
sa.Index("ix_webhook_deliveries_pending", D.next_attempt_at, D.id, sqlite_where=IS_PENDING).ddl_if(
    dialect="sqlite"
)
sa.Index(
    "ix_webhook_deliveries_due_by_endpoint",
    D.endpoint_id,
    D.next_attempt_at,
    D.id,
    postgresql_where=IS_PENDING,
).ddl_if(dialect="postgresql")
sa.Index(  # an order's earliest pending event for an endpoint: its first entry
    "ix_webhook_deliveries_order_pending",
    D.endpoint_id,
    D.order_key,
    D.event_id,
    sqlite_where=IS_PENDING,
    postgresql_where=IS_PENDING,
)

webhook_attempts: Final = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.Integer,
        sa.ForeignKey("webhook_deliveries.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("attempted_at", UtcDateTime, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),  # None: no answer (error says why)
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("response", sa.String(256), nullable=False),  # the answer's first bytes
    sa.Column("error", sa.String(128), nullable=True),
)

# PostgreSQL: the new deliveries a worker took when it published, before any of them is a
# row (revision 0015). A batch is one row per pass rather than one per delivery: each of its
# (event, endpoint) pairs becomes a ``webhook_deliveries`` row only once its first attempt is
# recorded, or when it has to wait (its order's earlier event pending, or the worker
# stopping). The worker renews ``lease_until`` while it holds any of them and deletes the
# row once every pair has its row; a batch whose lease ran out (its worker died) is expanded
# by any worker into pending rows for the pairs still without one, so nothing is lost.
# ``first_event``: the lowest event id in it (an order's later event waits while an earlier
# one may still be in a batch, without a row).
webhook_batches: Final = sa.Table(
    "webhook_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("lease_until", UtcDateTime, nullable=False),
    sa.Column("first_event", sa.Integer, nullable=False),
    sa.Column("event_ids", sa.ARRAY(sa.Integer).with_variant(sa.JSON(), "sqlite"), nullable=False),
    sa.Column(
        "endpoint_ids", sa.ARRAY(sa.String(40)).with_variant(sa.JSON(), "sqlite"), nullable=False
    ),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# PostgreSQL: of the given events, the (event, endpoint) pairs open batches hold without a
# row yet (a worker's, queued or in flight before their first attempt is recorded): pending
# deliveries for whoever reads them (the events API, the console, /metrics). Read before the
# rows, and a pair found in both is shown by its row: a pair leaves its batch only in the
# transaction that writes its row, so no delivery falls between the two reads.
_PAIRS: Final = (
    " FROM webhook_batches AS b CROSS JOIN LATERAL unnest(b.event_ids, b.endpoint_ids) AS p(e, ep)"
)
_NO_ROW: Final = (
    " NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d"
    " WHERE d.event_id = p.e AND d.endpoint_id = p.ep)"
)
PG_HELD_OF: Final = sa.text(
    "SELECT p.e AS event_id, p.ep AS endpoint_id, b.created_at, e.public_id, e.type, w.url"
    + _PAIRS
    + " JOIN events AS e ON e.id = p.e JOIN webhook_endpoints AS w ON w.id = p.ep WHERE"
    + _NO_ROW
    + " AND b.first_event <= :last AND p.e = ANY(CAST(:ids AS integer[])) ORDER BY p.e, p.ep"
).columns(created_at=UtcDateTime)
# PostgreSQL: every pair held without a row, and those of batches whose worker stopped
# renewing them (due, waiting for any worker's pass to write them out as rows)
PG_HELD_COUNT: Final = (
    sa.text(
        "SELECT count(*) AS held, count(*) FILTER (WHERE b.lease_until < :now) AS due,"
        " min(b.created_at) FILTER (WHERE b.lease_until < :now) AS oldest"
        + _PAIRS
        + " WHERE"
        + _NO_ROW
    )
    .bindparams(sa.bindparam("now", type_=UtcDateTime))
    .columns(oldest=UtcDateTime)
)
