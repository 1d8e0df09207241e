"""In-process wake-ups for status streams: ``notify(order_id)`` wakes every watcher.

The database is the truth; a wake-up only says "read again". Streams also re-read on a short
timer, so changes written by another process are seen too.
"""

from __future__ import annotations

import asyncio


class ChangeHub:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

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
