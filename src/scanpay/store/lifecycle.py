"""The lifecycle half of the SQL store: the query schedule, the lease, closing and replacing
attempts, and flagging surplus payments (a mixin of :class:`scanpay.store.sql.SqlStore`).

The lease is a compare-and-set on the attempt row, and the reconciler picks and leases its
batch in one statement whose condition is "due now and not leased"::

    UPDATE payment_attempts SET lease_until=:until, leased_by=:me
    WHERE id IN (SELECT id FROM payment_attempts WHERE <due and free>
                 ORDER BY next_query_at LIMIT :n FOR UPDATE SKIP LOCKED)   -- PostgreSQL
      AND <due and free> RETURNING *

so two workers (threads, processes, service instances; SQLite or PostgreSQL) never hold one
attempt at the same time, and never look at one attempt twice in one round. Replacing an
attempt is a compare-and-set on the old attempt's ``replaced_by`` in the transaction that
inserts the new one: one successor per attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from scanpay.domain.model import AttemptStatus, Event, EventType, OrderStatus, PaymentAttempt
from scanpay.errors import NotFoundError
from scanpay.store.rows import append_event, attempt_from_row, attempt_values
from scanpay.store.tables import orders, payment_attempts

R = TypeVar("R")
OPEN_STATUSES = (AttemptStatus.CREATING.value, AttemptStatus.ACTIVE.value)
PA = payment_attempts.c


class LifecycleStore:
    """Needs ``engine``, ``_writer`` and ``_clock`` (set by ``SqlStore.__init__``)."""

    engine: sa.Engine
    _writer: sa.Engine
    _clock: Callable[[], datetime]
    _executor: ThreadPoolExecutor | None

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        """Run a blocking database call off the event loop: on the store's own database
        thread when it has one (SQLite), else on the default thread pool."""
        if self._executor is None:
            return await asyncio.to_thread(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _attempt_by_id(self, conn: sa.Connection, attempt_id: str) -> PaymentAttempt:
        row = conn.execute(sa.select(payment_attempts).where(PA.id == attempt_id)).first()
        if row is None:
            raise NotFoundError("no such payment attempt")
        return attempt_from_row(row)

    def get_attempt_sync(self, attempt_id: str) -> PaymentAttempt:
        with self.engine.begin() as conn:
            return self._attempt_by_id(conn, attempt_id)

    async def get_attempt(self, attempt_id: str) -> PaymentAttempt:
        return await self._run(self.get_attempt_sync, attempt_id)

    # ---- the lease ---------------------------------------------------------------------

    def claim_due_sync(
        self, now: datetime, worker: str, lease_seconds: float, limit: int
    ) -> list[PaymentAttempt]:
        """Lease up to ``limit`` attempts whose next look is due; skip ones leased by others.

        One statement picks and leases (PostgreSQL: the picked rows are locked with ``FOR
        UPDATE SKIP LOCKED``; SQLite: the statement runs under the write lock), and the
        lease's condition includes "due now". A worker that picked an attempt in one step
        and leased it in another could lease one that another worker had just looked at
        and released with its next look in the future, and query it twice in one pass.
        """
        due = sa.and_(
            PA.next_query_at.is_not(None),
            PA.next_query_at <= now,
            sa.or_(PA.lease_until.is_(None), PA.lease_until < now),
        )
        pick = (
            sa.select(PA.id)
            .where(due)
            .order_by(PA.next_query_at, PA.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        until = now + timedelta(seconds=lease_seconds)
        with self._writer.begin() as conn:
            rows = conn.execute(
                sa.update(payment_attempts)
                .where(PA.id.in_(pick), due)
                .values(lease_until=until, leased_by=worker)
                .returning(*payment_attempts.c)
            ).all()
        claimed = [attempt_from_row(row) for row in rows]
        claimed.sort(key=lambda a: (a.next_query_at or now, a.id))
        return claimed

    async def claim_due(
        self, now: datetime, worker: str, lease_seconds: float, limit: int
    ) -> list[PaymentAttempt]:
        return await self._run(self.claim_due_sync, now, worker, lease_seconds, limit)

    def claim_sync(
        self, attempt_id: str, now: datetime, worker: str, lease_seconds: float
    ) -> PaymentAttempt | None:
        free = sa.or_(PA.lease_until.is_(None), PA.lease_until < now)
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.update(payment_attempts)
                .where(PA.id == attempt_id, free)
                .values(lease_until=now + timedelta(seconds=lease_seconds), leased_by=worker)
                .returning(*payment_attempts.c)
            ).first()
        return None if row is None else attempt_from_row(row)

    async def claim(
        self, attempt_id: str, now: datetime, worker: str, lease_seconds: float
    ) -> PaymentAttempt | None:
        return await self._run(self.claim_sync, attempt_id, now, worker, lease_seconds)

    def renew_sync(self, attempt_id: str, now: datetime, worker: str, lease_seconds: float) -> bool:
        """Extend the lease ``worker`` still holds (unexpired) on the attempt."""
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(payment_attempts)
                .where(PA.id == attempt_id, PA.leased_by == worker, PA.lease_until >= now)
                .values(lease_until=now + timedelta(seconds=lease_seconds))
            )
        return result.rowcount == 1

    async def renew(
        self, attempt_id: str, now: datetime, worker: str, lease_seconds: float
    ) -> bool:
        return await self._run(self.renew_sync, attempt_id, now, worker, lease_seconds)

    def release_sync(
        self, attempt_id: str, worker: str, next_query_at: datetime | None, queried: bool
    ) -> bool:
        """Give the lease back and store the next look (None: nothing left to do)."""
        values: dict[str, Any] = {
            "lease_until": None,
            "leased_by": None,
            "next_query_at": next_query_at,
        }
        if queried:
            values["query_count"] = PA.query_count + 1
            values["last_query_at"] = self._clock()
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(payment_attempts)
                .where(PA.id == attempt_id, PA.leased_by == worker)
                .values(**values)
            )
        return result.rowcount == 1

    async def release(
        self, attempt_id: str, worker: str, next_query_at: datetime | None, queried: bool
    ) -> bool:
        return await self._run(self.release_sync, attempt_id, worker, next_query_at, queried)

    def nudge_sync(self, order_id: str, now: datetime, quiet_seconds: float) -> bool:
        """Bring the order's open attempt's next look forward to ``now``, at most once per
        ``quiet_seconds`` (the checkout page asking). True when something was scheduled."""
        quiet = now - timedelta(seconds=quiet_seconds)
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(payment_attempts)
                .where(
                    PA.order_id == order_id,
                    PA.replaced_by.is_(None),
                    PA.status.in_(OPEN_STATUSES),
                    sa.or_(PA.last_query_at.is_(None), PA.last_query_at <= quiet),
                    sa.or_(PA.next_query_at.is_(None), PA.next_query_at > now),
                )
                .values(next_query_at=now)
            )
        return result.rowcount > 0

    async def nudge(self, order_id: str, now: datetime, quiet_seconds: float) -> bool:
        return await self._run(self.nudge_sync, order_id, now, quiet_seconds)

    def schedule_sync(self, attempt_id: str, at: datetime | None) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(payment_attempts).where(PA.id == attempt_id).values(next_query_at=at)
            )

    async def schedule(self, attempt_id: str, at: datetime | None) -> None:
        await self._run(self.schedule_sync, attempt_id, at)

    # ---- closing and replacing ---------------------------------------------------------

    def close_attempt_sync(
        self, attempt_id: str, data: Mapping[str, Any], next_query_at: datetime | None
    ) -> PaymentAttempt:
        """Mark an open attempt closed (WeChat confirmed it can't be paid) with its event."""
        now = self._clock()
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.update(payment_attempts)
                .where(PA.id == attempt_id, PA.status.in_(OPEN_STATUSES))
                .values(
                    status=AttemptStatus.CLOSED.value, updated_at=now, next_query_at=next_query_at
                )
                .returning(*payment_attempts.c)
            ).first()
            if row is None:
                return self._attempt_by_id(conn, attempt_id)
            attempt = attempt_from_row(row)
            payload = {"out_trade_no": attempt.out_trade_no, **data}
            append_event(conn, now, attempt.order_id, EventType.ATTEMPT_CLOSED, payload)
            return attempt

    async def close_attempt(
        self, attempt_id: str, data: Mapping[str, Any], next_query_at: datetime | None = None
    ) -> PaymentAttempt:
        return await self._run(self.close_attempt_sync, attempt_id, data, next_query_at)

    def replace_attempt_sync(self, old_id: str, new: PaymentAttempt) -> PaymentAttempt | None:
        """Insert ``new`` as the successor of the closed attempt ``old_id`` while the order is
        pending. None when another caller replaced it first or the order moved on."""
        with self._writer.begin() as conn:
            status = conn.execute(
                sa.select(orders.c.status).where(orders.c.id == new.order_id)
            ).scalar_one_or_none()
            if status != OrderStatus.PENDING.value:
                return None
            won = conn.execute(
                sa.update(payment_attempts)
                .where(
                    PA.id == old_id,
                    PA.order_id == new.order_id,
                    PA.replaced_by.is_(None),
                    PA.status.in_((AttemptStatus.CLOSED.value, AttemptStatus.FAILED.value)),
                )
                .values(replaced_by=new.id, next_query_at=None)
            ).rowcount
            if won != 1:
                return None
            conn.execute(sa.insert(payment_attempts).values(**attempt_values(new)))
            data = {"out_trade_no": new.out_trade_no, "replaces": old_id}
            append_event(conn, self._clock(), new.order_id, EventType.CREATED, data)
        return new

    async def replace_attempt(self, old_id: str, new: PaymentAttempt) -> PaymentAttempt | None:
        return await self._run(self.replace_attempt_sync, old_id, new)

    # ---- surplus payments --------------------------------------------------------------

    def mark_surplus_sync(
        self,
        attempt_id: str,
        transaction_id: str,
        reason: str,
        data: Mapping[str, Any],
        next_query_at: datetime | None,
    ) -> Event | None:
        """Flag a paid attempt whose order was already settled: attempt -> surplus plus an
        alert event, once (compare-and-set); None when it was flagged (or paid) already."""
        now = self._clock()
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.update(payment_attempts)
                .where(
                    PA.id == attempt_id,
                    PA.status.not_in((AttemptStatus.PAID.value, AttemptStatus.SURPLUS.value)),
                )
                .values(
                    status=AttemptStatus.SURPLUS.value,
                    transaction_id=transaction_id,
                    updated_at=now,
                    next_query_at=next_query_at,
                )
                .returning(PA.order_id)
            ).first()
            if row is None:
                return None
            payload = {"reason": reason, **data}
            return append_event(conn, now, row.order_id, EventType.ALERT, payload)

    async def mark_surplus(
        self,
        attempt_id: str,
        transaction_id: str,
        reason: str,
        data: Mapping[str, Any],
        next_query_at: datetime | None,
    ) -> Event | None:
        return await self._run(
            self.mark_surplus_sync, attempt_id, transaction_id, reason, data, next_query_at
        )

    # ---- operators and tests -----------------------------------------------------------

    def attempts_sync(self, order_id: str | None = None) -> list[PaymentAttempt]:
        query = sa.select(payment_attempts).order_by(PA.created_at, PA.id)
        if order_id is not None:
            query = query.where(PA.order_id == order_id)
        with self.engine.begin() as conn:
            return [attempt_from_row(row) for row in conn.execute(query)]
