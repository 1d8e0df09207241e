"""The daily reconciliation inside ``scanpay serve``.

Every ``poll_seconds`` the runner looks at the clock: once it is past ``after`` (10:00
Asia/Shanghai by default; WeChat builds the previous day's bill from 09:00) and yesterday has
no report yet, the instance that takes the ``daily`` lease row reconciles yesterday. A bill
that is not there yet (or any failure) is tried again ``retry_seconds`` later; nothing is
stored until a bill has been read whole. With several instances only the lease holder runs,
and the report it stores tells the others that the day is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final

from scanpay.domain.model import utcnow
from scanpay.domain.reconciliation import BillNotReadyError
from scanpay.errors import ScanpayError
from scanpay.reconcile.service import Reconciler
from scanpay.wechat.fields import BEIJING

log = logging.getLogger(__name__)
LEASE_NAME: Final = "daily"


class Tick(StrEnum):
    WAITING = "waiting"  # before the bill's time of day
    BACKING_OFF = "backing_off"  # a failed try is waiting for its retry time
    DONE = "done"  # yesterday has a report
    LEASED = "leased"  # another instance is at it
    RECONCILED = "reconciled"
    NOT_READY = "not_ready"
    FAILED = "failed"


class DailyRunner:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        clock: Callable[[], datetime] = utcnow,
        after: time = time(10, 0),
        retry_seconds: float = 900.0,
        poll_seconds: float = 60.0,
        lease_seconds: float = 600.0,
        holder: str | None = None,
    ) -> None:
        self.reconciler = reconciler
        self._clock = clock
        self.after = after
        self.retry_seconds = retry_seconds
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.holder = holder or f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
        self._retry_at: dict[date, datetime] = {}

    def due_day(self, now: datetime) -> date | None:
        local = now.astimezone(BEIJING)
        if local.time().replace(tzinfo=None) < self.after:
            return None
        return local.date() - timedelta(days=1)

    async def tick(self) -> Tick:
        """One look at the clock (and at most one run)."""
        now = self._clock()
        day = self.due_day(now)
        if day is None:
            return Tick.WAITING
        retry_at = self._retry_at.get(day)
        if retry_at is not None and now < retry_at:
            return Tick.BACKING_OFF
        store = self.reconciler.store
        if await asyncio.to_thread(store.report, day) is not None:
            return Tick.DONE
        if not await asyncio.to_thread(store.take_lease, LEASE_NAME, self.holder,
                                       self.lease_seconds):  # fmt: skip
            return Tick.LEASED
        try:
            if await asyncio.to_thread(store.report, day) is not None:
                return Tick.DONE
            await self.reconciler.run(day)
        except BillNotReadyError as exc:
            self._retry_at = {day: now + timedelta(seconds=self.retry_seconds)}
            log.info("reconciliation of %s: %s; trying again later", day.isoformat(), exc)
            return Tick.NOT_READY
        except ScanpayError as exc:
            self._retry_at = {day: now + timedelta(seconds=self.retry_seconds)}
            log.warning("reconciliation of %s failed: %s; trying again later",
                        day.isoformat(), exc.code)  # fmt: skip
            return Tick.FAILED
        finally:
            await asyncio.to_thread(store.release_lease, LEASE_NAME, self.holder)
        self._retry_at.pop(day, None)
        return Tick.RECONCILED

    async def loop(self) -> None:
        while True:
            # first look one poll after start: a restart loop never hammers WeChat
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.tick()
            except Exception:  # a database hiccup must not end the daily run for good
                log.exception("reconciliation runner")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.loop(), name="scanpay-reconciliation")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
