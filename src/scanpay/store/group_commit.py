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
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Batches ``submit`` calls into ``run_batch`` calls on ``executor`` (one thread)."""

    def __init__(
        self,
        executor: Executor,
        run_batch: Callable[[Sequence[T]], list[R | BaseException]],
        *,
        max_batch: int = 64,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._executor = executor
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[tuple[T, asyncio.Future[R], asyncio.AbstractEventLoop]] = []
        self._draining = False
        self.batches = 0  # transactions run, for tests and benchmarks
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._queue.append((item, future, loop))
            start = not self._draining
            self._draining = True
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
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if not batch:
                    self._draining = False
                    return
            try:
                outcomes = self._run_batch([item for item, _, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter, not swallowed
                outcomes = [exc] * len(batch)
            if len(outcomes) != len(batch):
                error = RuntimeError("batch runner returned the wrong number of outcomes")
                outcomes = [error] * len(batch)
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
