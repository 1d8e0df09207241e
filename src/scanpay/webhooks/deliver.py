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
* on SQLite by reading a watermark, the largest ``events.id``, on a connection of its own
  when the database's write-ahead log is written (inotify on Linux; elsewhere a poll every
  ``SCANPAY_WEBHOOK_WATCH_SECONDS``, 10 ms), at most once per that interval under load, and
  never while the database is idle (:class:`SqliteWatch`).

Everything else (retries coming due, a resend, an event without an order such as an alert
for an unknown ``out_trade_no``) is found by the worker's own poll every
``SCANPAY_WEBHOOK_POLL_SECONDS``. SIGTERM or SIGINT stops it gracefully: no new lease, the
deliveries in flight finish (each within the 15 s timeout) and are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa

from scanpay.config import Settings
from scanpay.domain.model import utcnow
from scanpay.store.listen import ChangeListener
from scanpay.webhooks.runtime import WebhookRuntime, build_webhooks

log = logging.getLogger(__name__)
R = TypeVar("R")


IN_MODIFY: Final = 0x2
_EVENT: Final = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; name
SETTLE_SECONDS: Final = 0.001  # from hearing a write to reading: the commit completes


def _inotify(folder: str) -> int | None:
    """A non-blocking inotify descriptor watching ``folder`` for writes (Linux), or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(folder), IN_MODIFY) < 0:
        os.close(fd)
        return None
    return fd


def _os_name(name: bytes = b"deliver-db") -> None:
    """Name the calling thread for the OS too (``top -H``, ``/proc/*/task/*/comm``), so the
    database thread's CPU can be told from the event loop's (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME


class SqliteWatch:
    """Calls ``on_new()`` when the largest ``events.id`` grows.

    The read (``SELECT max(id) FROM events`` on a sqlite3 connection of its own, read only,
    never waiting on a lock) takes microseconds, but on this kind of machine any wake-up of
    an idle process costs 0.1-0.3 ms of CPU, so it is not simply polled: on Linux the
    database's folder is watched with inotify and the read runs 1 ms after the write-ahead
    log is written (every commit writes it; the commit becomes visible just after), once more
    ``interval`` later if it found nothing, and no sooner than ``interval`` after a read that
    found new events (so under load at most once per ``interval``). An idle database costs
    nothing. Elsewhere (or if inotify is refused) the read is polled
    every ``interval`` by a thread that sleeps in between."""

    def __init__(self, path: str, on_new: Callable[[], None], interval: float) -> None:
        self.path = os.path.abspath(path)
        self.on_new = on_new
        self.interval = interval
        self.looks = 0  # watermark reads so far (tests, benchmarks)
        self.mode = ""
        self._wal = os.fsencode(os.path.basename(self.path) + "-wal")
        self._seen = 0
        self._conn: sqlite3.Connection | None = None
        self._fd: int | None = None
        self._again: asyncio.TimerHandle | None = None
        self._earliest = 0.0  # (loop time) no read before this after one that found events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _look(self, conn: sqlite3.Connection) -> bool:
        """Read the watermark; True when it grew since the last read."""
        try:
            row = conn.execute("SELECT max(id) FROM events").fetchone()
        except sqlite3.OperationalError:  # busy (a checkpoint, say): next time
            return False
        self.looks += 1
        mark, grew = row[0] or 0, (row[0] or 0) > self._seen
        self._seen = mark
        return grew

    # ---- inotify (Linux) ---------------------------------------------------------------

    def _readable(self) -> None:
        assert self._fd is not None
        ours = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                ours = ours or name == self._wal
                offset += _EVENT.size + length
        if ours and self._again is None:
            loop = asyncio.get_running_loop()
            at = max(loop.time() + SETTLE_SECONDS, self._earliest)
            self._again = loop.call_at(at, self._scheduled, True)

    def _scheduled(self, heard: bool) -> None:
        """A read after a write was heard (``heard``), or the second read after one that
        found nothing (the commit heard may not have been visible yet)."""
        self._again = None
        if self._conn is None:
            return
        loop = asyncio.get_running_loop()
        if self._look(self._conn):
            self.on_new()
            self._earliest = loop.time() + self.interval  # at most one read per interval
        elif heard:
            self._again = loop.call_later(self.interval, self._scheduled, False)

    # ---- polling (elsewhere) -----------------------------------------------------------

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(self.interval):
                if self._look(conn):
                    loop.call_soon_threadsafe(self.on_new)
        except Exception:  # the worker's own poll still finds every event
            log.exception("deliver: the SQLite watch stopped; new events are found by the "
                          "SCANPAY_WEBHOOK_POLL_SECONDS poll only")  # fmt: skip
        finally:
            conn.close()

    async def start(self) -> None:
        if self.mode:
            return
        loop = asyncio.get_running_loop()
        conn = self._connect()
        self._look(conn)  # the starting point (the worker's first pass sees what is there)
        self._fd = _inotify(os.path.dirname(self.path))
        if self._fd is not None:
            self._conn = conn
            loop.add_reader(self._fd, self._readable)
            self.mode = "inotify"
            return
        conn.close()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(loop,), daemon=True,
                                        name="scanpay-deliver-watch")  # fmt: skip
        self._thread.start()
        self.mode = "poll"

    async def stop(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._again is not None:
            self._again.cancel()
            self._again = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join)
        self.mode = ""


class Deliverer:
    """The worker, its database thread and its wake-up source, built from settings."""

    def __init__(
        self, settings: Settings, engine: sa.Engine, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._executor = ThreadPoolExecutor(2, "scanpay-deliver-db", initializer=_os_name)
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
            self.watch = SqliteWatch(path, self._written, settings.webhook_watch_seconds)
            self.how = (f"watching the SQLite file (inotify, else a poll every "
                        f"{settings.webhook_watch_seconds:g} s)")  # fmt: skip
        else:
            listen_url = settings.database_listen_url or settings.database_url
            self.watch = ChangeListener(listen_url, self._changed, self._caught_up)
            self.how = "LISTEN scanpay_orders"
            if not settings.database_prepared_statements and not settings.database_listen_url:
                log.warning("deliver: SCANPAY_DATABASE_PREPARED_STATEMENTS=false but no "
                            "SCANPAY_DATABASE_LISTEN_URL: behind a transaction pooler LISTEN "
                            "hears nothing, and new events are found by the "
                            "SCANPAY_WEBHOOK_POLL_SECONDS poll only")  # fmt: skip

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _written(self) -> None:
        self.worker.wake(look=False)  # new events, orders unknown; due ones wait for the poll

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
