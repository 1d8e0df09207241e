"""In-process wake-ups for status streams: ``notify(order_id)`` wakes every watcher.

The database is the truth; a wake-up only says "read again". Streams also re-read on a short
timer, so changes written by another process are seen too. Streams ``subscribe`` and
``unsubscribe`` so that an order nobody watches holds no memory here.
"""

from __future__ import annotations

import asyncio


class ChangeHub:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, int] = {}

    def subscribe(self, order_id: str) -> None:
        self._watchers[order_id] = self._watchers.get(order_id, 0) + 1

    def unsubscribe(self, order_id: str) -> None:
        left = self._watchers.get(order_id, 0) - 1
        if left > 0:
            self._watchers[order_id] = left
            return
        self._watchers.pop(order_id, None)
        self._events.pop(order_id, None)

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

    def __len__(self) -> int:
        return len(self._events)
