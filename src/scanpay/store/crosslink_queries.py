"""Read-only queries joining the console to the webhooks (issue 11) and reconciliation
(issue 14) tables: an order's webhook deliveries with their attempts, disabled endpoints,
the webhook backlog (for ``/metrics``), and the list of reconciled days.

Blocking calls; the console runs them on a worker thread like its own queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import sqlalchemy as sa

from scanpay.store.outbox import PENDING, Attempt
from scanpay.store.reconciliations import differences, reports
from scanpay.store.tables import events
from scanpay.store.webhook_tables import (
    PG_HELD_COUNT,
    PG_HELD_OF,
    pending,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)

E = events.c
D = webhook_deliveries.c
W = webhook_endpoints.c
A = webhook_attempts.c
MAX_ATTEMPTS_SHOWN: Final = 200  # per order, the newest: the timeline stays readable


def endpoint_label(endpoint_id: str, url: str) -> str:
    """An endpoint as the console shows it: its id and where it points, without the URL's
    query, fragment or user info (which may carry a shop's own tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{endpoint_id} {parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class OrderDelivery:
    """One webhook delivery of one of an order's events, with its attempts oldest first."""

    event_public_id: str
    event_type: str  # the stored type (order paid, refund succeeded, alert, ...)
    endpoint: str  # :func:`endpoint_label`
    status: str  # pending, delivered, failed, cancelled
    created_at: datetime
    next_attempt_at: datetime | None
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class DisabledEndpoint:
    endpoint: str
    disabled_at: datetime
    reason: str


@dataclass(frozen=True)
class WebhookBacklog:
    unpublished: int  # events not yet given a position (and so no deliveries yet)
    pending: int  # deliveries not delivered, failed or cancelled yet
    due: int  # pending deliveries due now and not being sent (no live lease)
    oldest_due_seconds: float  # how long the oldest due delivery has waited (0: none)


@dataclass(frozen=True)
class ReconciledDay:
    day: date
    status: str
    api_version: str
    bill_rows: int
    open_count: int
    held_count: int
    run_at: datetime
    counts: dict[str, int]  # open differences by kind


class CrosslinkQueries:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ---- webhooks ----------------------------------------------------------------------

    def order_deliveries(self, order_id: str) -> list[OrderDelivery]:
        query = (
            sa.select(
                D.id,
                D.status,
                D.created_at,
                D.next_attempt_at,
                E.public_id,
                E.type,
                W.id.label("endpoint_id"),
                W.url,
            )
            .join(events, E.id == D.event_id)
            .join(webhook_endpoints, W.id == D.endpoint_id)
            .where(E.order_id == order_id, E.public_id.is_not(None))
            .order_by(D.event_id, D.id)
        )
        with self.engine.connect() as conn:
            held = self._held(conn, order_id)  # (before the rows: PG_HELD_OF)
            rows = conn.execute(query).all()
            history: dict[int, list[Attempt]] = {row.id: [] for row in rows}
            if history:
                newest = conn.execute(
                    sa.select(webhook_attempts)
                    .where(A.delivery_id.in_(list(history)))
                    .order_by(A.id.desc())
                    .limit(MAX_ATTEMPTS_SHOWN)
                ).all()
                for a in reversed(newest):
                    history[a.delivery_id].append(
                        Attempt(a.attempted_at, a.status_code, a.latency_ms, a.response, a.error)
                    )
        found = [
            OrderDelivery(
                event_public_id=row.public_id,
                event_type=row.type,
                endpoint=endpoint_label(row.endpoint_id, row.url),
                status=row.status,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at,
                attempts=tuple(history[row.id]),
            )
            for row in rows
        ]
        rowed = {(row.public_id, row.endpoint_id) for row in rows}
        found += [  # taken by a worker, no attempt recorded yet: pending, due since taken
            OrderDelivery(
                h.public_id,
                h.type,
                endpoint_label(h.endpoint_id, h.url),
                PENDING,
                h.created_at,
                h.created_at,
                (),
            )
            for h in held
            if (h.public_id, h.endpoint_id) not in rowed
        ]
        return found

    @staticmethod
    def _held(conn: sa.Connection, order_id: str) -> Sequence[sa.Row[Any]]:
        """The order's deliveries held in open batches without a row (PostgreSQL), with
        their event's public id and type and their endpoint's URL, oldest event first."""
        if conn.dialect.name != "postgresql":
            return ()
        ids = list(
            conn.execute(
                sa.select(E.id).where(E.order_id == order_id, E.public_id.is_not(None))
            ).scalars()
        )
        if not ids:
            return ()
        return conn.execute(PG_HELD_OF, {"ids": ids, "last": max(ids)}).all()

    def order_event_ids(self, order_id: str) -> list[str]:
        """The public ids of the order's published shop-facing events, oldest first."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(E.public_id)
                .where(E.order_id == order_id, E.public_id.is_not(None))
                .order_by(E.id)
            ).scalars()
            return [str(public_id) for public_id in found]

    def disabled_endpoints(self) -> list[DisabledEndpoint]:
        """Endpoints turned off by delivery (a 410), not those the shop deleted."""
        query = (
            sa.select(W.id, W.url, W.disabled_at, W.disabled_reason)
            .where(
                W.disabled_at.is_not(None),
                sa.or_(W.disabled_reason.is_(None), W.disabled_reason != "deleted"),
            )
            .order_by(W.disabled_at.desc())
            .limit(100)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DisabledEndpoint(endpoint_label(r.id, r.url), r.disabled_at, r.disabled_reason or "")
            for r in rows
        ]

    def webhook_backlog(self, now: datetime) -> WebhookBacklog:
        with self.engine.connect() as conn:
            unpublished = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(E.position.is_(None))
            ).scalar_one()
            waiting = conn.execute(
                sa.select(sa.func.count()).select_from(webhook_deliveries).where(pending(D.status))
            ).scalar_one()
            due, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(D.next_attempt_at)).where(
                    pending(D.status),
                    D.next_attempt_at <= now,
                    sa.or_(D.lease_until.is_(None), D.lease_until < now),  # not in flight
                )
            ).one()
            if conn.dialect.name == "postgresql":  # deliveries held in batches, no row yet
                held = conn.execute(PG_HELD_COUNT, {"now": now}).one()
                waiting += held.held
                due += held.due
                if held.oldest is not None:
                    oldest = held.oldest if oldest is None else min(oldest, held.oldest)
        waited = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        return WebhookBacklog(int(unpublished), int(waiting), int(due), waited)

    # ---- reconciliation ----------------------------------------------------------------

    def reconciled_days(self, limit: int, before: date | None = None) -> list[ReconciledDay]:
        """The latest reports, newest day first (days before ``before`` when given)."""
        query = sa.select(reports).order_by(reports.c.bill_date.desc()).limit(limit)
        if before is not None:
            query = query.where(reports.c.bill_date < before)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            counts: dict[date, dict[str, int]] = {row.bill_date: {} for row in rows}
            if counts:
                DF = differences.c
                grouped = conn.execute(
                    sa.select(DF.bill_date, DF.kind, sa.func.count())
                    .where(DF.bill_date.in_(list(counts)), DF.state == "open")
                    .group_by(DF.bill_date, DF.kind)
                )
                for day, kind, count in grouped:
                    counts[day][kind] = int(count)
        return [
            ReconciledDay(
                day=row.bill_date,
                status=row.status,
                api_version=row.api_version,
                bill_rows=row.bill_rows,
                open_count=row.difference_count,
                held_count=row.held_count,
                run_at=row.run_at,
                counts=counts[row.bill_date],
            )
            for row in rows
        ]
