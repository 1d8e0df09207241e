"""What the operator console reads: the filtered order list, one order's whole story, alerts,
refused notifications and the day's figures.

Blocking SQLAlchemy Core reads (the console runs them on a worker thread). The order list is
keyset-paginated newest first on ``(created_at, id)``; with the indexes of revision 0009 a page
is an index range scan whatever the table's size (``benchmarks/bench_console.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from scanpay.domain.model import AttemptStatus, Event, EventType, Order, OrderStatus, PaymentAttempt
from scanpay.domain.refunds import Refund, RefundStatus
from scanpay.domain.service import ReportVerdict, surplus_refund_key
from scanpay.store.console_tables import alert_acks, operators
from scanpay.store.refunds import _refund as refund_from_row
from scanpay.store.refunds import refunds
from scanpay.store.rows import attempt_from_row, event_from_row, order_from_row
from scanpay.store.tables import events, notifications_received, orders, payment_attempts

# Outcomes of a notification that scanpay took (anything else was refused).
TAKEN: Final = (
    ReportVerdict.APPLIED.value,
    ReportVerdict.DUPLICATE.value,
    ReportVerdict.NOTED.value,
)
UNSETTLED_REFUNDS: Final = (RefundStatus.SUBMITTING.value, RefundStatus.PROCESSING.value)
OPEN_ATTEMPTS: Final = (AttemptStatus.CREATING.value, AttemptStatus.ACTIVE.value)
PAID_EVENT_TYPES: Final = (EventType.PAID.value,)
EXPORT_BATCH: Final = 1000


@dataclass(frozen=True)
class OrderFilter:
    """The console list's filters; ``None`` means "any". Times are UTC, ``created_to``
    exclusive; amounts in fen, inclusive; ``order_ids`` is what the search box found."""

    status: OrderStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    order_ids: tuple[str, ...] | None = None

    def conditions(
        self, *, with_status: bool = True, for_list: bool = False
    ) -> list[sa.ColumnElement[bool]]:
        """The WHERE terms. ``for_list``: the amount is compared as ``amount + 0`` so that the
        planner walks the newest-first index and stops after a page, instead of reading a
        whole amount range through ``(amount, status)`` and sorting it (SQLite did)."""
        where: list[sa.ColumnElement[bool]] = []
        amount = orders.c.amount + 0 if for_list else orders.c.amount
        if with_status and self.status is not None:
            where.append(orders.c.status == self.status.value)
        if self.created_from is not None:
            where.append(orders.c.created_at >= self.created_from)
        if self.created_to is not None:
            where.append(orders.c.created_at < self.created_to)
        if self.amount_min is not None:
            where.append(amount >= self.amount_min)
        if self.amount_max is not None:
            where.append(amount <= self.amount_max)
        if self.order_ids is not None:
            where.append(orders.c.id.in_(self.order_ids))
        return where


@dataclass(frozen=True)
class OrderRow:
    order: Order
    out_trade_no: str | None  # the newest attempt's number
    transaction_id: str | None


@dataclass(frozen=True)
class Notification:
    id: int
    api: str
    received_at: datetime
    out_trade_no: str | None
    outcome: str
    detail: str
    size: int
    source: str | None


@dataclass(frozen=True)
class OrderStory:
    """Everything scanpay knows about one order."""

    order: Order
    attempts: list[PaymentAttempt]
    events: list[tuple[int, Event]]  # (event row id, event)
    notifications: list[Notification]
    refunds: list[Refund]
    acks: dict[int, AlertAck] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertAck:
    operator_name: str
    note: str
    acknowledged_at: datetime


@dataclass(frozen=True)
class Alert:
    event_id: int
    event: Event
    ack: AlertAck | None
    refund: Refund | None  # the automatic refund of a second payment


@dataclass(frozen=True)
class RefusedGroup:
    api: str
    outcome: str
    source: str | None
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class Figures:
    """One period at a glance."""

    created: int
    paid: int
    paid_amount: int
    median_seconds_to_pay: float | None


@dataclass(frozen=True)
class Backlog:
    open_attempts: int
    due_queries: int
    unsettled_refunds: int


def _notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        api=row.api,
        received_at=row.received_at,
        out_trade_no=row.out_trade_no,
        outcome=row.outcome,
        detail=row.detail,
        size=int(row.size),
        source=row.client,
    )


_NOTIFICATION_COLUMNS: Final = (
    notifications_received.c.id,
    notifications_received.c.api,
    notifications_received.c.received_at,
    notifications_received.c.out_trade_no,
    notifications_received.c.outcome,
    notifications_received.c.detail,
    notifications_received.c.client,
    sa.func.length(notifications_received.c.body).label("size"),
)


class ConsoleQueries:
    """Reads for the console over the service's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ---- finding orders ----------------------------------------------------------------

    def find(self, term: str) -> tuple[str, ...]:
        """Ids of the orders that ``term`` names: an order id, an ``out_trade_no``, a WeChat
        ``transaction_id`` or an ``out_refund_no`` (exact match)."""
        term = term.strip()
        if not term or len(term) > 64:
            return ()
        by_attempt = sa.select(payment_attempts.c.order_id).where(
            sa.or_(
                payment_attempts.c.out_trade_no == term, payment_attempts.c.transaction_id == term
            )
        )
        queries = (
            sa.select(orders.c.id).where(orders.c.id == term),
            by_attempt,
            sa.select(refunds.c.order_id).where(refunds.c.out_refund_no == term),
        )
        found: list[str] = []
        with self.engine.begin() as conn:
            for query in queries:
                for (order_id,) in conn.execute(query):
                    if order_id not in found:
                        found.append(order_id)
        return tuple(found)

    def list_orders(
        self, filters: OrderFilter, limit: int, before: tuple[datetime, str] | None
    ) -> list[OrderRow]:
        """A page newest first, after the keyset ``before``."""
        query = sa.select(orders).where(*filters.conditions(for_list=True))
        if before is not None:
            created, order_id = before
            # a row-value comparison: both databases walk the (created_at, id) index from it
            query = query.where(
                sa.tuple_(orders.c.created_at, orders.c.id)
                < sa.tuple_(
                    sa.literal(created, orders.c.created_at.type),
                    sa.literal(order_id, orders.c.id.type),
                )
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        with self.engine.begin() as conn:
            found = [order_from_row(row) for row in conn.execute(query)]
            latest = self._latest_attempts(conn, [order.id for order in found])
        return [OrderRow(order, *latest.get(order.id, (None, None))) for order in found]

    def _latest_attempts(
        self, conn: sa.Connection, order_ids: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]:
        if not order_ids:
            return {}
        rows = conn.execute(
            sa.select(
                payment_attempts.c.order_id,
                payment_attempts.c.out_trade_no,
                payment_attempts.c.transaction_id,
            )
            .where(payment_attempts.c.order_id.in_(order_ids))
            .order_by(payment_attempts.c.created_at, payment_attempts.c.id)
        )
        latest: dict[str, tuple[str, str | None]] = {}
        for order_id, out_trade_no, transaction_id in rows:
            paid = latest.get(order_id, (None, None))[1]
            latest[order_id] = (out_trade_no, transaction_id or paid)
        return latest

    def count_by_status(self, filters: OrderFilter) -> dict[OrderStatus, int]:
        """How many orders of each status match the filters other than status."""
        query = (
            sa.select(orders.c.status, sa.func.count())
            .where(*filters.conditions(with_status=False))
            .group_by(orders.c.status)
        )
        with self.engine.begin() as conn:
            counts = {OrderStatus(status): int(n) for status, n in conn.execute(query)}
        return {status: counts.get(status, 0) for status in OrderStatus}

    def export(self, filters: OrderFilter, limit: int) -> Iterator[list[OrderRow]]:
        """The filtered list in batches, newest first, at most ``limit`` orders."""
        before: tuple[datetime, str] | None = None
        left = limit
        while left > 0:
            batch = self.list_orders(filters, min(EXPORT_BATCH, left), before)
            if not batch:
                return
            yield batch
            left -= len(batch)
            last = batch[-1].order
            before = (last.created_at, last.id)

    # ---- one order ---------------------------------------------------------------------

    def story(self, order_id: str) -> OrderStory | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(orders).where(orders.c.id == order_id)).first()
            if row is None:
                return None
            attempts = [
                attempt_from_row(a)
                for a in conn.execute(
                    sa.select(payment_attempts)
                    .where(payment_attempts.c.order_id == order_id)
                    .order_by(payment_attempts.c.created_at, payment_attempts.c.id)
                )
            ]
            event_rows = conn.execute(
                sa.select(events).where(events.c.order_id == order_id).order_by(events.c.seq)
            ).all()
            numbers = [a.out_trade_no for a in attempts]
            notes = (
                [
                    _notification(n)
                    for n in conn.execute(
                        sa.select(*_NOTIFICATION_COLUMNS)
                        .where(notifications_received.c.out_trade_no.in_(numbers))
                        .order_by(notifications_received.c.id)
                    )
                ]
                if numbers
                else []
            )
            found_refunds = [
                refund_from_row(r)
                for r in conn.execute(
                    sa.select(refunds)
                    .where(refunds.c.order_id == order_id)
                    .order_by(refunds.c.created_at, refunds.c.id)
                )
            ]
            event_ids = [r.id for r in event_rows if r.type == EventType.ALERT.value]
            acks = self._acks(conn, event_ids)
        return OrderStory(
            order=order_from_row(row),
            attempts=attempts,
            events=[(r.id, event_from_row(r)) for r in event_rows],
            notifications=notes,
            refunds=found_refunds,
            acks=acks,
        )

    def notification(self, notification_id: int) -> tuple[Notification, bytes] | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(*_NOTIFICATION_COLUMNS, notifications_received.c.body).where(
                    notifications_received.c.id == notification_id
                )
            ).first()
        return None if row is None else (_notification(row), bytes(row.body))

    def order_of(self, out_trade_no: str) -> str | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(payment_attempts.c.order_id).where(
                    payment_attempts.c.out_trade_no == out_trade_no
                )
            ).first()
        return None if row is None else str(row.order_id)

    # ---- what needs attention ----------------------------------------------------------

    def _acks(self, conn: sa.Connection, event_ids: Sequence[int]) -> dict[int, AlertAck]:
        if not event_ids:
            return {}
        rows = conn.execute(
            sa.select(alert_acks, operators.c.name)
            .join(operators, operators.c.id == alert_acks.c.operator_id)
            .where(alert_acks.c.event_id.in_(event_ids))
        )
        return {r.event_id: AlertAck(r.name, r.note, r.acknowledged_at) for r in rows}

    def alerts(self, *, acknowledged: bool, limit: int) -> list[Alert]:
        """Alerts newest first: the open ones, or the acknowledged ones."""
        acked = sa.select(alert_acks.c.event_id)
        query = (
            sa.select(events)
            .where(events.c.type == EventType.ALERT.value)
            .where(events.c.id.in_(acked) if acknowledged else events.c.id.not_in(acked))
            .order_by(events.c.created_at.desc(), events.c.id.desc())
            .limit(limit)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
            acks = self._acks(conn, [r.id for r in rows])
            keys = {
                r.id: surplus_refund_key(str(r.data["out_trade_no"]))
                for r in rows
                if isinstance(r.data, dict) and isinstance(r.data.get("out_trade_no"), str)
            }
            found = (
                {
                    row.idempotency_key: refund_from_row(row)
                    for row in conn.execute(
                        sa.select(refunds).where(refunds.c.idempotency_key.in_(list(keys.values())))
                    )
                }
                if keys
                else {}
            )
        return [
            Alert(r.id, event_from_row(r), acks.get(r.id), found.get(keys.get(r.id, "")))
            for r in rows
        ]

    def open_alert_count(self) -> int:
        """How many alerts nobody has acknowledged yet."""
        query = sa.select(sa.func.count()).where(
            events.c.type == EventType.ALERT.value,
            events.c.id.not_in(sa.select(alert_acks.c.event_id)),
        )
        with self.engine.begin() as conn:
            return int(conn.execute(query).scalar_one())

    def stuck_refunds(self, older_than: datetime, limit: int) -> list[Refund]:
        """Refunds still ``submitting`` / ``processing`` (or ``abnormal``) since before
        ``older_than``, oldest first."""
        query = (
            sa.select(refunds)
            .where(
                refunds.c.status.in_((*UNSETTLED_REFUNDS, RefundStatus.ABNORMAL.value)),
                refunds.c.updated_at < older_than,
            )
            .order_by(refunds.c.updated_at)
            .limit(limit)
        )
        with self.engine.begin() as conn:
            return [refund_from_row(row) for row in conn.execute(query)]

    def refused_groups(self, since: datetime) -> list[RefusedGroup]:
        """Refused notifications since ``since`` by API and outcome, most frequent first."""
        n = notifications_received
        query = (
            sa.select(
                n.c.api,
                n.c.outcome,
                n.c.client,
                sa.func.count().label("n"),
                sa.func.min(n.c.received_at).label("first_at"),
                sa.func.max(n.c.received_at).label("last_at"),
            )
            .where(n.c.outcome.not_in(TAKEN), n.c.received_at >= since)
            .group_by(n.c.api, n.c.outcome, n.c.client)
            .order_by(sa.func.count().desc(), n.c.api, n.c.outcome)
            .limit(200)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return [
            RefusedGroup(
                r.api,
                r.outcome,
                r.client,
                int(r.n),
                _utc(r.first_at),
                _utc(r.last_at),
            )
            for r in rows
        ]

    def refused(self, since: datetime, limit: int) -> list[Notification]:
        n = notifications_received
        query = (
            sa.select(*_NOTIFICATION_COLUMNS)
            .where(n.c.outcome.not_in(TAKEN), n.c.received_at >= since)
            .order_by(n.c.received_at.desc(), n.c.id.desc())
            .limit(limit)
        )
        with self.engine.begin() as conn:
            return [_notification(row) for row in conn.execute(query)]

    # ---- at a glance -------------------------------------------------------------------

    def _wait_seconds(self) -> sa.ColumnElement[float]:
        """Seconds from an order's creation to its ``paid`` event, in SQL."""
        if self.engine.dialect.name == "postgresql":
            return sa.cast(sa.extract("epoch", events.c.created_at - orders.c.created_at), sa.Float)
        day = sa.func.julianday(events.c.created_at) - sa.func.julianday(orders.c.created_at)
        return day * 86400.0

    def figures(self, start: datetime, end: datetime) -> Figures:
        """Orders created and paid in ``[start, end)``; the median time to pay of those paid.
        Everything is computed by the database (no row per order comes back)."""
        paid_in = (
            events.c.type.in_(PAID_EVENT_TYPES),
            events.c.created_at >= start,
            events.c.created_at < end,
        )
        joined = events.join(orders, orders.c.id == events.c.order_id)
        with self.engine.begin() as conn:
            created = conn.execute(
                sa.select(sa.func.count()).where(
                    orders.c.created_at >= start, orders.c.created_at < end
                )
            ).scalar_one()
            paid, amount = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(orders.c.amount), 0))
                .select_from(joined)
                .where(*paid_in)
            ).one()
            median = None
            if paid:
                wait = self._wait_seconds().label("wait")
                middle = conn.execute(
                    sa.select(wait)
                    .select_from(joined)
                    .where(*paid_in)
                    .order_by(wait)
                    .offset((paid - 1) // 2)
                    .limit(1 if paid % 2 else 2)
                ).scalars()
                values = [float(v) for v in middle]
                median = sum(values) / len(values)
        return Figures(
            created=int(created),
            paid=int(paid),
            paid_amount=int(amount),
            median_seconds_to_pay=median,
        )

    def backlog(self, now: datetime) -> Backlog:
        with self.engine.begin() as conn:
            open_attempts = conn.execute(
                sa.select(sa.func.count()).where(payment_attempts.c.status.in_(OPEN_ATTEMPTS))
            ).scalar_one()
            due = conn.execute(
                sa.select(sa.func.count()).where(payment_attempts.c.next_query_at <= now)
            ).scalar_one()
            unsettled = conn.execute(
                sa.select(sa.func.count()).where(refunds.c.status.in_(UNSETTLED_REFUNDS))
            ).scalar_one()
        return Backlog(int(open_attempts), int(due), int(unsettled))


def _utc(value: datetime | str) -> datetime:
    """An aggregate's time: SQLite hands MIN/MAX back as naive UTC (or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day_bounds(now: datetime, days: int, tz: Any) -> tuple[datetime, datetime]:
    """The UTC bounds of the last ``days`` calendar days in ``tz``, today included."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=days - 1)
    return start, midnight + timedelta(days=1)
