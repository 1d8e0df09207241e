"""The reconciliation store and the daily run of ``scanpay serve`` (docs/reconciliation.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

import sqlalchemy as sa

from scanpay.config import Settings
from scanpay.reconcile.runner import DailyRunner
from scanpay.reconcile.service import Reconciler
from scanpay.reconcile.source import ClientBillSource
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.wiring import WeChatClients


@contextlib.asynccontextmanager
async def _idle() -> AsyncIterator[None]:
    yield


def build_reconciliation(
    settings: Settings,
    engine: sa.Engine,
    wechat: WeChatClients,
    clock: Callable[[], datetime],
) -> tuple[ReconciliationStore, Callable[[], AbstractAsyncContextManager[None]]]:
    """The store the shop API reads, and what runs the daily reconciliation (idle when
    ``reconcile_enabled`` is off)."""
    store = ReconciliationStore(engine, clock=clock)
    if not settings.reconcile_enabled:
        return store, _idle
    source = ClientBillSource(settings.api_version, v2=wechat.v2, v3=wechat.v3)
    reconciler = Reconciler(store, source, clock=clock, hold_days=settings.reconcile_hold_days)
    runner = DailyRunner(
        reconciler,
        clock=clock,
        after=settings.reconcile_after,
        retry_seconds=settings.reconcile_retry_seconds,
        poll_seconds=settings.reconcile_poll_seconds,
    )
    return store, runner.running
