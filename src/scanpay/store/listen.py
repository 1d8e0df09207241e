"""``ChangeListener``: PostgreSQL ``LISTEN scanpay_orders`` on a dedicated connection.

Migration 0010's trigger sends ``'<order id> <last_seq>,...'`` on the channel whenever orders'
``last_seq`` move (one notification per statement), from whichever instance wrote them. The
listener holds one autocommit connection (psycopg 3, asyncio) and hands every change it
hears to ``on_change(order_id, seq)``.
LISTEN belongs to a session and PostgreSQL keeps nothing for a listener that was away, so
after every (re)connection, once LISTEN is in place, ``on_connect()`` runs: the caller catches
up from the tables (the status hub asks for the ``last_seq`` of every watched order).
A dropped connection is retried with a growing pause (up to ``MAX_PAUSE``); a quiet connection
is probed every ``probe_seconds`` so a silently dead one is noticed too.

With ``wanted`` (the status hub: "is any stream open?"), the session LISTENs only while it
returns true (looked at every ``CHECK_SECONDS``), and UNLISTENs after ``idle_seconds``
without it: an instance without status streams is not woken by every other instance's
commits, and PostgreSQL does not signal it (the notification path's cost when nobody
watches, docs/benchmarks.md). Each LISTEN is followed by the catch-up, as after a
reconnection, so a change made while it was not listening is not missed.

The connection must be direct: a PgBouncer in transaction-pooling mode cannot carry LISTEN
(``database_listen_url`` names a direct one; docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import psycopg
import sqlalchemy as sa

log = logging.getLogger(__name__)

CHANNEL: Final = "scanpay_orders"
FIRST_PAUSE: Final = 0.2
MAX_PAUSE: Final = 5.0
CHECK_SECONDS: Final = 0.05  # how often ``wanted`` is looked at
IDLE_SECONDS: Final = 5.0  # unwanted this long: UNLISTEN


def conninfo(database_url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("LISTEN needs a PostgreSQL URL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def parse_payload(payload: str) -> list[tuple[str, int]]:
    """``'<order id> <seq>,<order id> <seq>,...'`` -> [(order id, seq), ...]; malformed
    entries are left out."""
    changes = []
    for entry in payload.split(","):
        order_id, _, seq = entry.partition(" ")
        if order_id and seq.isdigit() and len(seq) <= 18:
            changes.append((order_id, int(seq)))
    return changes


class ChangeListener:
    """Runs ``LISTEN`` until stopped (see the module docstring)."""

    def __init__(
        self,
        database_url: str,
        on_change: Callable[[str, int], None],
        on_connect: Callable[[], Awaitable[None]],
        *,
        probe_seconds: float = 15.0,
        wanted: Callable[[], bool] | None = None,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._conninfo = conninfo(database_url)
        self._on_change = on_change
        self._on_connect = on_connect
        self._probe_seconds = probe_seconds
        self._wanted = wanted
        self._idle_seconds = idle_seconds
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # sessions opened so far (tests and logs)
        self.received = 0
        self.listening = False  # LISTEN in force on the current session

    async def _session(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="scanpay-listen"
        )
        self._conn = conn
        async with conn:
            self.connections += 1
            if self.connections > 1:
                log.info("status streams: LISTEN connection restored; catching up")
            if self._wanted is None or self._wanted():
                await self._listen(conn)  # before `connected`: ready means listening
            self.connected.set()
            loop = asyncio.get_running_loop()
            quiet_since = unwanted_since = loop.time()
            wait = self._probe_seconds if self._wanted is None else CHECK_SECONDS
            while True:
                if self.listening:
                    async for note in conn.notifies(timeout=wait):
                        quiet_since = loop.time()
                        for order_id, seq in parse_payload(note.payload):
                            self.received += 1
                            self._on_change(order_id, seq)
                else:
                    await asyncio.sleep(wait)
                now = loop.time()
                if self._wanted is not None:
                    if self._wanted():
                        unwanted_since = now
                        if not self.listening:
                            await self._listen(conn)
                    elif self.listening and now - unwanted_since >= self._idle_seconds:
                        await conn.execute(f"UNLISTEN {CHANNEL}")
                        self.listening = False
                if now - quiet_since >= self._probe_seconds:
                    await conn.execute("SELECT 1")  # quiet for a while: still there?
                    quiet_since = now

    async def _listen(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        await conn.execute(f"LISTEN {CHANNEL}")
        self.listening = True
        await self._on_connect()  # after LISTEN: nothing slips between catch-up and live

    async def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            before = self.connections
            try:
                await self._session()
            except (psycopg.Error, OSError) as exc:
                if self.connections > before:
                    pause = FIRST_PAUSE  # it had been working: try again soon
                log.warning(
                    "status streams: LISTEN connection lost (%s); retrying in %.1f s",
                    type(exc).__name__,
                    pause,
                )
            finally:
                self.connected.clear()
                self.listening = False
                self._conn = None
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scanpay-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def backend_pid(self) -> int | None:
        """The server process of the LISTEN session (tests terminate it on purpose)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid
