"""The reconciler as an asyncio task of the service, and the lifecycle's wiring.

:func:`build_lifecycle` makes the :class:`~scanpay.domain.lifecycle.Lifecycle` (expiry,
replacement, active queries) and the :class:`~scanpay.domain.reconciler.Reconciler` for an
app; :class:`Worker` runs reconciler passes in the app's lifespan (``scanpay serve`` and
``scanpay demo``): a pass every ``reconciler_poll_seconds``, or at once when woken (a checkout
page asked); a pass also resubmits or queries refunds still submitting or processing. The
schedule and the lease live in the database, so a restarted process, or a
second instance on the same database, carries on safely. Tests drive
``runtime.reconciler.run_once()`` themselves with a test clock instead of starting the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request

from scanpay.config import Settings
from scanpay.domain.lifecycle import Lifecycle
from scanpay.domain.model import PaymentAttempt
from scanpay.domain.reconciler import LifecyclePolicy, Reconciler
from scanpay.domain.refunds import RefundService
from scanpay.domain.service import PaymentService
from scanpay.errors import ScanpayError
from scanpay.store.refunds import SqlRefundStore

log = logging.getLogger(__name__)


def policy_from(settings: Settings) -> LifecyclePolicy:
    return LifecyclePolicy(
        payment_window=timedelta(seconds=settings.payment_window_seconds),
        order_deadline=timedelta(seconds=settings.order_deadline_seconds),
        first_query_delay=timedelta(seconds=settings.query_first_delay_seconds),
        max_query_delay=timedelta(seconds=settings.query_max_delay_seconds),
        checkout_quiet=timedelta(seconds=settings.checkout_query_quiet_seconds),
        lease=timedelta(seconds=settings.reconciler_lease_seconds),
        batch=settings.reconciler_batch,
    )


class RefundServiceRefunder:
    """The domain's ``SurplusRefunder`` over the refund use case: a full refund of that one
    attempt (``out_trade_no=``), idempotent by the key derived from its ``out_trade_no``."""

    def __init__(self, refunds: RefundService) -> None:
        self.refunds = refunds

    async def refund_surplus(self, attempt: PaymentAttempt, idempotency_key: str) -> None:
        await self.refunds.refund(
            attempt.order_id,
            attempt.amount,
            idempotency_key=idempotency_key,
            reason="duplicate payment",
            out_trade_no=attempt.out_trade_no,
        )


class Worker:
    """Runs reconciler passes until stopped; errors of a pass are logged, never fatal."""

    def __init__(self, reconciler: Reconciler, poll_seconds: float) -> None:
        self.reconciler = reconciler
        self.poll_seconds = poll_seconds
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()
            try:
                while not self._stopping and (await self.reconciler.run_once()).handled:
                    pass
            except ScanpayError as exc:
                log.warning("reconciler pass failed: %s", exc.code)
            except OSError as exc:  # the database went away for a moment
                log.warning("reconciler pass failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()

    async def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="scanpay-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self.wake()
            await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


@dataclass(frozen=True)
class LifecycleRuntime:
    lifecycle: Lifecycle
    reconciler: Reconciler
    worker: Worker
    enabled: bool

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: the worker task runs while the app serves (if enabled)."""
        if not self.enabled:
            yield
            return
        async with self.worker.running():
            yield


def build_lifecycle(
    settings: Settings,
    service: PaymentService,
    clock: Callable[[], datetime],
    refunds: RefundService | None = None,
) -> LifecycleRuntime:
    """With ``refunds`` (and a store that keeps the refund schedule, ``SqlRefundStore``)
    the reconciler also looks after refunds still submitting or processing."""
    reconciler_holder: list[Worker] = []
    lifecycle = Lifecycle(service, wake=lambda: reconciler_holder[0].wake())
    refund_store = service.store if isinstance(service.store, SqlRefundStore) else None
    reconciler = Reconciler(
        service.store,
        lifecycle,
        service.policy,
        clock=clock,
        refund_store=refund_store,
        refunds=refunds,
        worker_id=worker_id(settings.instance_name),
    )
    worker = Worker(reconciler, settings.reconciler_poll_seconds)
    reconciler_holder.append(worker)
    return LifecycleRuntime(lifecycle, reconciler, worker, settings.reconciler_enabled)


def worker_id(instance_name: str | None) -> str | None:
    """The reconciler's lease holder: the instance's name (if set) and a random part, unique
    per process start (``leased_by`` then shows which instance holds what)."""
    if instance_name is None:
        return None
    return f"{instance_name}-{secrets.token_hex(6)}"


def get_lifecycle(request: Request) -> LifecycleRuntime:
    runtime: LifecycleRuntime = request.app.state.lifecycle
    return runtime
