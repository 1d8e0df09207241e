"""A delivery-only process (``scanpay deliver``): the webhook worker without the API.

API instances then run with ``SCANPAY_WEBHOOKS_ENABLED=false``: they still write every event
in the transaction of its change (the outbox), but publish and deliver nothing; one or more
delivery processes on the same database do both. Several of them side by side are safe for
the reasons several service instances are: one publisher at a time (SQLite's write lock, an
advisory lock on PostgreSQL), deliveries leased (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
and recorded only while the lease is held; a process killed mid-delivery leaves a lease that
runs out, and the delivery is sent again with the same ``webhook-id``.

Without the in-process wake-up a delivery process learns of new events

* on PostgreSQL by ``LISTEN scanpay_orders`` (:class:`~scanpay.store.listen.ChangeListener`):
  migration 0010's trigger already sends one NOTIFY per batch of order changes, from any
  instance, and every order event is written with such a change;
* on SQLite by polling a watermark, the largest ``events.id``, every
  ``SCANPAY_WEBHOOK_WATCH_SECONDS`` (10 ms) on a connection of its own: a read of the last
  page of the table's b-tree, a few microseconds (:class:`SqliteWatch`).

Everything else (retries coming due, a resend, an event without an order such as an alert
for an unknown ``out_trade_no``) is found by the worker's own poll every
``SCANPAY_WEBHOOK_POLL_SECONDS``. SIGTERM or SIGINT stops it gracefully: no new lease, the
deliveries in flight finish (each within the 15 s timeout) and are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from scanpay.config import Settings
from scanpay.domain.model import utcnow
from scanpay.store.listen import ChangeListener
from scanpay.webhooks.runtime import WebhookRuntime, build_webhooks

log = logging.getLogger(__name__)
R = TypeVar("R")


class SqliteWatch:
    """Calls ``on_new()`` when the largest ``events.id`` grows, looked at every ``interval``
    seconds on a sqlite3 connection of its own (read only; never waits on a lock)."""

    def __init__(self, path: str, on_new: Callable[[], None], interval: float) -> None:
        self.path = path
        self.on_new = on_new
        self.interval = interval
        self.looks = 0  # watermark reads so far (tests, benchmarks)
        self._task: asyncio.Task[None] | None = None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        conn.execute("PRAGMA query_only=ON")
        return conn

    async def _run(self) -> None:
        conn = self._open()
        try:
            seen: int | None = None
            while True:
                try:
                    row = conn.execute("SELECT max(id) FROM events").fetchone()
                except sqlite3.OperationalError:  # busy (a checkpoint, say): next time
                    row = None
                self.looks += 1
                if row is not None:
                    mark = row[0] or 0
                    if seen is not None and mark > seen:
                        self.on_new()
                    seen = mark
                await asyncio.sleep(self.interval)
        finally:
            conn.close()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scanpay-deliver-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Deliverer:
    """The worker, its database thread and its wake-up source, built from settings."""

    def __init__(
        self, settings: Settings, engine: sa.Engine, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._executor = ThreadPoolExecutor(1, "scanpay-deliver-db")
        self.runtime: WebhookRuntime = build_webhooks(settings, engine, self._run, clock)
        self.worker = self.runtime.worker
        self.watch: SqliteWatch | ChangeListener
        url = engine.url
        if url.get_backend_name() == "sqlite":
            path = url.database
            if not path or path == ":memory:" or "mode=memory" in str(url):
                raise ValueError(
                    "SCANPAY_DATABASE_URL: an in-memory SQLite database cannot be shared with "
                    "scanpay serve; name a file"
                )
            self.watch = SqliteWatch(path, self.worker.new_events, settings.webhook_watch_seconds)
            self.how = f"polling the newest event every {settings.webhook_watch_seconds:g} s"
        else:
            listen_url = settings.database_listen_url or settings.database_url
            self.watch = ChangeListener(listen_url, self._changed, self._caught_up)
            self.how = "LISTEN scanpay_orders"

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _changed(self, order_id: str, _seq: int) -> None:
        self.worker.wake(order_id)

    async def _caught_up(self) -> None:
        self.worker.wake()  # (re)connected: whatever was missed meanwhile, publish it now

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The settings endpoint brought up to date, the worker and the watch started; on
        leaving, the watch stopped, then the worker (deliveries in flight finished and
        recorded)."""
        try:
            async with self.runtime.running(worker=True):
                await self.watch.start()
                try:
                    yield
                finally:
                    await self.watch.stop()
                    if self.worker.in_flight:
                        log.info("deliver: finishing %d deliveries in flight",
                                 self.worker.in_flight)  # fmt: skip
        finally:
            self._executor.shutdown(wait=True)
