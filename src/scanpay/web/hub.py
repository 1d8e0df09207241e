"""Wake-ups for status streams: ``notify(order_id)`` wakes every watcher of that order.

The database is the truth; a wake-up only says "read again". Changes made in this process
call :meth:`ChangeHub.notify` right after their commit, so a stream wakes at once. Changes
made by another process (a second instance, the reconciler elsewhere) are found by one shared
watcher task: while anything is watched it asks the database once per ``interval`` for the
``last_seq`` of every watched order (one query, however many streams) and wakes the orders
whose sequence moved past what their streams have read. An idle stream costs nothing per
stream. Streams ``subscribe``/``unsubscribe`` so an unwatched order holds no memory here.

On PostgreSQL, changes by other instances arrive at once through ``LISTEN``
(:class:`scanpay.store.listen.ChangeListener` calls :meth:`ChangeHub.changed`, and
:meth:`ChangeHub.catch_up` after each (re)connection); the poll stays as the safety net.
:meth:`ChangeHub.drain` (graceful shutdown) wakes every stream so that it ends with a
``retry:`` hint and the browser reconnects, through the balancer, to another instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Final, TypeAlias

log = logging.getLogger(__name__)

# ids -> {id: last_seq} for the ids that exist (e.g. SqlStore.last_seqs)
SeqSource: TypeAlias = Callable[[Collection[str]], Awaitable[Mapping[str, int]]]
POLL_SECONDS: Final = 1.0


class ChangeHub:
    def __init__(self, *, interval: float = POLL_SECONDS) -> None:
        self.interval = interval
        self.draining = False
        self._events: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, int] = {}
        self._seen: dict[str, int] = {}  # the highest seq a stream of the order has read
        self._source: SeqSource | None = None
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, order_id: str, seq: int = 0, source: SeqSource | None = None) -> None:
        """Count a watcher of ``order_id`` that has read up to ``seq``; with ``source`` the
        shared watcher (re)starts so changes by other processes are noticed too."""
        self._watchers[order_id] = self._watchers.get(order_id, 0) + 1
        self.seen(order_id, seq)
        if source is not None:
            self._source = source
        if self._source is not None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._watch_database())

    def unsubscribe(self, order_id: str) -> None:
        left = self._watchers.get(order_id, 0) - 1
        if left > 0:
            self._watchers[order_id] = left
            return
        self._watchers.pop(order_id, None)
        self._events.pop(order_id, None)
        self._seen.pop(order_id, None)

    def open_streams(self) -> int:
        """How many watchers (status streams) are open now (metrics)."""
        return sum(self._watchers.values())

    def seen(self, order_id: str, seq: int) -> None:
        """A stream of ``order_id`` has read its events up to ``seq``."""
        if order_id in self._watchers:
            self._seen[order_id] = max(seq, self._seen.get(order_id, 0))

    def notify(self, order_id: str) -> None:
        event = self._events.pop(order_id, None)
        if event is not None:
            event.set()

    def watch(self, order_id: str) -> asyncio.Event:
        """The event the next :meth:`notify` for ``order_id`` sets. Take it *before* reading,
        so a change between the read and the wait is not missed."""
        event = self._events.get(order_id)
        if event is None:
            event = self._events[order_id] = asyncio.Event()
        return event

    def changed(self, order_id: str, seq: int) -> None:
        """Another process moved ``order_id`` to ``seq`` (LISTEN): wake its streams if they
        have not read that far."""
        if order_id in self._watchers and seq > self._seen.get(order_id, seq):
            self._seen[order_id] = seq
            self.notify(order_id)

    async def catch_up(self) -> None:
        """One round of the database watcher now (after LISTEN was re-established)."""
        watched = list(self._watchers)
        if watched and self._source is not None:
            for order_id, seq in (await self._source(watched)).items():
                self.changed(order_id, seq)

    def drain(self) -> None:
        """Graceful shutdown: every stream wakes, sees ``draining`` and ends."""
        self.draining = True
        for event in list(self._events.values()):
            event.set()
        self._events.clear()

    async def _watch_database(self) -> None:
        """The shared watcher: runs while anything is watched, one query per interval."""
        while self._watchers and self._source is not None:
            await asyncio.sleep(self.interval)
            try:
                await self.catch_up()
            except Exception:  # logged; the next round retries
                log.exception("status streams: reading the latest event numbers failed")

    def __len__(self) -> int:
        return len(self._events)
