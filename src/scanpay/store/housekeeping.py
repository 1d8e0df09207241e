"""Bounded storage of what outsiders send, and retention (issue 9).

* :func:`refused_values`: the ``notifications_received`` row of a body refused before it was
  verified (wrong type, unsigned, bad signature, malformed, ...): its first ``keep_bytes``
  bytes, its size and SHA-256, and the sender's address. Whatever an outsider sends, one
  refusal costs a few hundred bytes, not the body.
* :class:`Retention` and :func:`prune`: delete, in small batches, notifications older than
  the retention for their kind (kept whole = verified, or refused), events of orders nobody
  has touched for the events retention (and alerts without an order) and idempotency keys
  past theirs. Active-query records (:mod:`scanpay.store.query_log`) are kept as long as
  verified notifications. Defaults: ``docs/observability.md`` and ``docs/configuration.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from scanpay.domain.model import OrderStatus
from scanpay.store.query_log import payment_queries
from scanpay.store.tables import events, idempotency_keys, notifications_received, orders

BATCH: Final = 1000
NR = notifications_received


def refused_values(
    api: str,
    body: bytes,
    outcome: str,
    detail: str,
    *,
    keep_bytes: int,
    now: datetime,
    client: str | None,
) -> dict[str, Any]:
    """The row for a refused body (see the module docstring)."""
    return {
        "api": api[:32],
        "received_at": now,
        "out_trade_no": None,
        "body": body[:keep_bytes],
        "outcome": outcome[:32],
        "detail": detail[:256],
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "client": client[:64] if client else None,
    }


def insert_refused(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(sa.insert(NR), values)


@dataclass(frozen=True)
class Retention:
    """How long rows are kept (days)."""

    accepted_days: float = 90
    refused_days: float = 7
    events_days: float = 400
    idempotency_days: float = 30


@dataclass(frozen=True)
class Pruned:
    accepted: int
    refused: int
    events: int
    idempotency_keys: int
    queries: int = 0  # active-query records (same retention as accepted notifications)

    @property
    def total(self) -> int:
        return self.accepted + self.refused + self.events + self.idempotency_keys + self.queries


def _in_batches(engine: sa.Engine, ids: sa.Select[Any], table: sa.Table, key: str) -> int:
    """Delete the rows whose ``key`` ``ids`` selects, ``BATCH`` per transaction."""
    column = table.c[key]
    total = 0
    while True:
        with engine.begin() as conn:
            chosen = [row[0] for row in conn.execute(ids.limit(BATCH))]
            if not chosen:
                return total
            conn.execute(sa.delete(table).where(column.in_(chosen)))
        total += len(chosen)
        if len(chosen) < BATCH:
            return total


def prune(engine: sa.Engine, now: datetime, retention: Retention) -> Pruned:
    """Delete what is past its retention (see the module docstring); the counts."""

    def cutoff(days: float) -> datetime:
        return now - timedelta(days=days)

    accepted = _in_batches(
        engine,
        sa.select(NR.c.id).where(
            NR.c.body_sha256.is_(None), NR.c.received_at < cutoff(retention.accepted_days)
        ),
        NR,
        "id",
    )
    refused = _in_batches(
        engine,
        sa.select(NR.c.id).where(
            NR.c.body_sha256.is_not(None), NR.c.received_at < cutoff(retention.refused_days)
        ),
        NR,
        "id",
    )
    old_events = cutoff(retention.events_days)
    settled_and_quiet = sa.select(orders.c.id).where(
        orders.c.status != OrderStatus.PENDING.value, orders.c.updated_at < old_events
    )
    event_rows = _in_batches(
        engine,
        sa.select(events.c.id).where(
            events.c.created_at < old_events,
            sa.or_(events.c.order_id.is_(None), events.c.order_id.in_(settled_and_quiet)),
        ),
        events,
        "id",
    )
    keys = _in_batches(
        engine,
        sa.select(idempotency_keys.c.key).where(
            idempotency_keys.c.created_at < cutoff(retention.idempotency_days)
        ),
        idempotency_keys,
        "key",
    )
    queries = _in_batches(
        engine,
        sa.select(payment_queries.c.id).where(
            payment_queries.c.asked_at < cutoff(retention.accepted_days)
        ),
        payment_queries,
        "id",
    )
    return Pruned(accepted, refused, event_rows, keys, queries)


def pages_in_use(engine: sa.Engine) -> int:
    """Bytes the database really uses: SQLite's pages minus its free list (the ``-wal`` file
    keeps its size after a burst, so file sizes mislead); PostgreSQL's database size."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            return int(page_size) * (int(pages) - int(free))
        size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        return int(size)
