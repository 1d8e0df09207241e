"""The simulator's sense of time: real time plus an offset, or a frozen test clock.

Every time the simulator reads (order creation, ``time_expire``, notification schedules,
``time_end``) comes from one :class:`SimClock`. ``advance(seconds)`` moves it forward, which is
how tests and ``POST /sim/clock/advance`` play a 24-hour retry schedule in no real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """``SimClock()`` follows real time; ``SimClock(start=...)`` stays put until advanced."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._frozen = start is not None
        self._base = start.timestamp() if start is not None else 0.0
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def offset(self) -> float:
        """Seconds advanced so far (kept across restarts by scanpay.simulator.saved)."""
        with self._lock:
            return self._offset

    def timestamp(self) -> float:
        """Seconds since the epoch, in simulated time."""
        with self._lock:
            if self._frozen:
                return self._base + self._offset
            return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(self, seconds: float) -> datetime:
        """Move time forward (never backward) and wake whoever waits on the clock."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return self.now()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every :meth:`advance`; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
