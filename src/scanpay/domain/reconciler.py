"""The active-query schedule and one reconciler pass, free of any web or database code.

Policy (:class:`LifecyclePolicy`): an attempt's payment window, the order's overall deadline,
and the backoff of active queries: ``first, 2*first, 4*first, ...`` capped at ``max_delay``
after each look, counted from the attempt's creation. The schedule lives in the database
(``next_query_at``), so a restarted process carries on where the old one stopped.

:class:`Reconciler` makes one pass: lease the attempts that are due (compare-and-set, so
never two workers on one attempt), let :class:`~scanpay.domain.lifecycle.Lifecycle` look at
each one, store the next look and give the lease back. Then the same for refunds still
``submitting`` or ``processing`` (when given a refund store and the refund use case): each
due one is resubmitted or queried (``RefundService.reconcile_refund``) on the same backoff.
Time is the injected ``clock``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from scanpay.domain.model import PaymentAttempt
from scanpay.domain.ports import LifecycleStore
from scanpay.errors import ScanpayError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LifecyclePolicy:
    payment_window: timedelta = timedelta(minutes=15)
    order_deadline: timedelta = timedelta(hours=2)
    first_query_delay: timedelta = timedelta(seconds=10)
    max_query_delay: timedelta = timedelta(minutes=5)
    checkout_quiet: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(seconds=60)
    batch: int = 50

    def query_delay(self, looks: int) -> timedelta:
        """The wait after ``looks`` queries: first, 2*first, 4*first, ... capped."""
        factor: int = 2 ** min(max(looks, 0), 30)
        delay: timedelta = min(self.first_query_delay * factor, self.max_query_delay)
        return delay

    def next_query(self, attempt: PaymentAttempt, now: datetime) -> datetime:
        """When to look at an open attempt again after querying it now: the backoff, but
        never later than its expiry (that is when it must be closed)."""
        at = now + self.query_delay(attempt.query_count + 1)
        if attempt.expires_at is not None:
            at = min(at, max(attempt.expires_at, now))
        return at

    def retry_at(self, attempt: PaymentAttempt, now: datetime) -> datetime:
        """When to try again after a look failed (WeChat unreachable, ...): the backoff,
        but not past the expiry of an open attempt that has not expired yet, so that it is
        still closed on time (an expired one keeps the backoff: no busy retry loop)."""
        at = now + self.query_delay(attempt.query_count)
        if attempt.open and attempt.expires_at is not None and now < attempt.expires_at:
            at = min(at, attempt.expires_at)
        return at

    def attempt_expiry(self, now: datetime, order_expires_at: datetime | None) -> datetime:
        window_end = now + self.payment_window
        return window_end if order_expires_at is None else min(window_end, order_expires_at)


class AttemptHandler:
    """What a pass does with one leased attempt (implemented by ``Lifecycle``)."""

    async def look(self, attempt: PaymentAttempt) -> tuple[datetime | None, bool]:
        """Act on the attempt; return (next look or None, whether WeChat was queried)."""
        raise NotImplementedError


@dataclass(frozen=True, order=True)
class DueRefund:
    """A refund the reconciler leased: what it needs to look at it and schedule the next."""

    id: str
    out_refund_no: str
    query_count: int


class RefundScheduleStore(Protocol):
    async def claim_due_refunds(
        self, now: datetime, worker: str, lease_seconds: float, limit: int, first_delay: float
    ) -> list[DueRefund]:
        """Lease (compare-and-set) up to ``limit`` unsettled refunds whose look is due."""
        ...

    async def release_refund(
        self, refund_id: str, worker: str, next_query_at: datetime
    ) -> bool: ...


class RefundReconciling(Protocol):
    async def reconcile_refund(self, out_refund_no: str) -> object:
        """Resubmit (still submitting) or query (processing) one refund; apply the answer."""
        ...


@dataclass(frozen=True)
class PassResult:
    claimed: int
    failed: int
    refunds: int = 0

    @property
    def handled(self) -> int:
        """Attempts and refunds looked at in the pass (0: nothing was due)."""
        return self.claimed + self.refunds


class Reconciler:
    """One worker. ``worker_id`` must be unique per running instance (random by default)."""

    def __init__(
        self,
        store: LifecycleStore,
        handler: AttemptHandler,
        policy: LifecyclePolicy,
        *,
        clock: Callable[[], datetime],
        worker_id: str | None = None,
        refund_store: RefundScheduleStore | None = None,
        refunds: RefundReconciling | None = None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.policy = policy
        self.clock = clock
        self.worker_id = worker_id or "w_" + secrets.token_hex(8)
        self.refund_store = refund_store
        self.refunds = refunds

    async def run_once(self) -> PassResult:
        """Lease what is due now, look at each, release. Errors of one attempt (WeChat
        unreachable, ...) are logged and retried on the backoff; they never stop the pass."""
        now = self.clock()
        claimed = await self.store.claim_due(
            now, self.worker_id, self.policy.lease.total_seconds(), self.policy.batch
        )
        failed = 0
        lease = self.policy.lease.total_seconds()
        for attempt in claimed:
            # The batch is looked at one by one: the lease is renewed before each look, and an
            # attempt whose lease ran out meanwhile (a slow WeChat) is left to whoever took it.
            if not await self.store.renew(attempt.id, self.clock(), self.worker_id, lease):
                log.warning("reconcile out_trade_no=%s skipped: lease expired before its turn",
                            attempt.out_trade_no)  # fmt: skip
                continue
            queried = False
            try:
                next_at, queried = await self.handler.look(attempt)
            except ScanpayError as exc:
                failed += 1
                next_at = self.policy.retry_at(attempt, self.clock())
                log.warning("reconcile out_trade_no=%s failed: %s (next look %s)",
                            attempt.out_trade_no, exc.code, next_at.isoformat())  # fmt: skip
            await self.store.release(attempt.id, self.worker_id, next_at, queried)
        refunds, refunds_failed = await self._refund_pass(now)
        return PassResult(len(claimed), failed + refunds_failed, refunds)

    async def _refund_pass(self, now: datetime) -> tuple[int, int]:
        if self.refund_store is None or self.refunds is None:
            return 0, 0
        due = await self.refund_store.claim_due_refunds(
            now,
            self.worker_id,
            self.policy.lease.total_seconds(),
            self.policy.batch,
            self.policy.first_query_delay.total_seconds(),
        )
        failed = 0
        for refund in due:
            try:
                await self.refunds.reconcile_refund(refund.out_refund_no)
            except ScanpayError as exc:
                failed += 1
                log.warning("reconcile out_refund_no=%s failed: %s",
                            refund.out_refund_no, exc.code)  # fmt: skip
            next_at = self.clock() + self.policy.query_delay(refund.query_count + 1)
            await self.refund_store.release_refund(refund.id, self.worker_id, next_at)
        return len(due), failed

    async def drain(self, max_passes: int = 1000) -> int:
        """Passes until nothing is due (tests on a frozen clock); returns attempts handled."""
        total = 0
        for _ in range(max_passes):
            result = await self.run_once()
            total += result.handled
            if result.handled == 0:
                break
        return total
