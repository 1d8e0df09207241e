"""Group commit: many small write requests, one transaction, on the store's database thread.

``GroupCommit.submit(item)`` queues ``item`` and returns when the transaction that carried it
has committed (or with the exception it raised). While the database thread is busy, requests
pile up; the next run takes them all (up to ``max_batch``) and hands them to ``run_batch``,
which executes them in one transaction and returns one result (or exception) per item, in
order. So under load the commit and the thread hand-off are paid once per batch rather than
once per request, and nothing is acknowledged before its commit.

The batch runner owns the transaction: if the shared transaction fails it must roll back and
run the items one transaction each, so that one bad item fails alone
(:func:`run_each_alone`).

Gathering (``gather_seconds`` > 0, for back-ends whose transaction has a large fixed cost,
such as PostgreSQL's round trips and commit): before a batch starts, the database thread waits,
at most ``gather_seconds``, until the queue holds as many items as were recently outstanding at
once (queued or in the running batch: the peak over the last second or so). A lone request
finds a peak of one and starts at once; under steady concurrency the batch takes the requests
that the previous batch's answers are about to bring back, so the per-transaction costs are
shared by more items (like PostgreSQL's ``commit_delay`` with ``commit_siblings``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PEAK_WINDOW = 1.0  # seconds over which gathering remembers the concurrency it saw


class GroupCommit(Generic[T, R]):
    """Batches ``submit`` calls into ``run_batch`` calls on ``executor`` (one thread)."""

    def __init__(
        self,
        executor: Executor,
        run_batch: Callable[[Sequence[T]], list[R | BaseException]],
        *,
        max_batch: int = 64,
        gather_seconds: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if gather_seconds < 0:
            raise ValueError("gather_seconds must not be negative")
        self._executor = executor
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._gather = gather_seconds
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[tuple[T, asyncio.Future[R], asyncio.AbstractEventLoop]] = []
        self._running = 0  # items in the batch being run
        self._peak = 0  # most items outstanding at once (queued + running) in this window
        self._peak_before = 0  # ... in the window before
        self._window_end = 0.0
        self._draining = False
        self.batches = 0  # transactions run, for tests and benchmarks
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._queue.append((item, future, loop))
            self._peak = max(self._peak, len(self._queue) + self._running)
            start = not self._draining
            self._draining = True
            self._arrived.notify()
        if start:
            try:
                self._executor.submit(self._drain)
            except BaseException:
                with self._lock:
                    self._draining = False
                    self._queue.clear()
                raise
        return await future

    def _drain(self) -> None:
        """On the database thread: run batches until the queue is empty."""
        while True:
            with self._lock:
                self._gather_company()
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if not batch:
                    self._draining = False
                    return
                self._running = len(batch)
            try:
                outcomes = self._run_batch([item for item, _, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter, not swallowed
                outcomes = [exc] * len(batch)
            if len(outcomes) != len(batch):
                error = RuntimeError("batch runner returned the wrong number of outcomes")
                outcomes = [error] * len(batch)
            with self._lock:
                self._running = 0
            self.batches += 1
            self.items += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], object]]] = {}
            for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:
                    continue  # that event loop is closed: nobody is waiting any more

    def _gather_company(self) -> None:
        """(Lock held.) Wait, at most ``gather_seconds``, for the queue to reach the recent
        peak of outstanding items."""
        if self._gather <= 0 or not self._queue:
            return
        now = time.monotonic()
        if now >= self._window_end:
            self._peak_before, self._peak = self._peak, len(self._queue)
            self._window_end = now + PEAK_WINDOW
        target = min(max(self._peak, self._peak_before), self._max_batch)
        deadline = now + self._gather
        while len(self._queue) < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.wait(left)


def _settle(settled: list[tuple[asyncio.Future[R], object]]) -> None:
    for future, outcome in settled:
        if future.done():  # the waiter was cancelled (client went away); the row stands
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]


def run_each_alone(items: Sequence[T], run_one: Callable[[T], R]) -> list[R | BaseException]:
    """Fallback after a failed shared transaction: each item in its own transaction."""
    outcomes: list[R | BaseException] = []
    for item in items:
        try:
            outcomes.append(run_one(item))
        except Exception as exc:  # noqa: BLE001 - becomes that item's outcome
            outcomes.append(exc)
    return outcomes
