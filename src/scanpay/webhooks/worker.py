"""The delivery worker: publish the outbox, lease due deliveries, POST them, record.

One asyncio task per service process. A pass records the attempts finished since the last
one, publishes new ``events`` rows (creating deliveries) and leases what is due, in one
database call and transaction (:meth:`OutboxStore.cycle_sync`; on PostgreSQL the record is
a transaction of its own, run at the same time: :meth:`WebhookWorker._record_beside`), then
starts one task per delivery, at most ``concurrency`` in flight and ``per_endpoint`` of them
to one endpoint (so that a hanging endpoint holds a few slots, not all); it runs again when
woken (a change in this process, a delivery finished) or every ``poll_seconds`` (changes by
other processes, retries coming due). After a pass that published, the next one waits a
little longer the more it published (up to ``batch_seconds``), so under load a pass handles
tens of rows and a change costs the service a fraction of a transaction rather than two. The
lease outlives the HTTP timeout, so a killed process's deliveries are picked up again once
it expires: delivery is at least once, and the receiver deduplicates by ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from scanpay.domain.model import utcnow
from scanpay.store.outbox import Attempt, Cycle, Due, EndpointRoom, OutboxStore, Outcome
from scanpay.webhooks.schedule import DEFAULT_SCHEDULE, SLOW_DOWN, next_delay, retry_after
from scanpay.webhooks.sender import TIMEOUT_SECONDS, Sender
from scanpay.webhooks.signing import sign_headers

log = logging.getLogger(__name__)
GONE: Final = 410
COALESCE_SECONDS: Final = 0.002
# After a pass that published n rows the next pass waits BATCH_BASE + n x BATCH_PER_ROW
# seconds (at most batch_seconds): 11 ms after a lone payment, 50 ms under a steady
# 1,000 payments/s, so that each pass's fixed cost is shared by tens of rows.
BATCH_SECONDS: Final = 0.050
BATCH_BASE: Final = 0.010
BATCH_PER_ROW: Final = 0.001
PUBLISH_BATCH: Final = 500  # rows published per pass (another pass follows at once if full)


class WebhookWorker:
    def __init__(
        self,
        outbox: OutboxStore,
        sender: Sender,
        *,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        poll_seconds: float = 1.0,
        lease_seconds: float = TIMEOUT_SECONDS * 4,
        concurrency: int = 256,
        per_endpoint: int | None = 32,
        batch_seconds: float = BATCH_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.schedule = tuple(schedule)
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.batch_seconds = batch_seconds
        self.clock = clock
        self.name = "wh-" + secrets.token_hex(6)
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: dict[str, int] = {}  # deliveries in flight per endpoint
        self._done: list[Outcome] = []  # finished attempts not yet recorded
        self._stopping = False
        self._changed = False  # events written here since the last pass began
        self.published = 0  # rows the last pass published
        self._looked = float("-inf")  # when a pass last looked for due deliveries

    def wake(self, order_id: str | None = None, *, look: bool | None = None) -> None:
        """Events were written (of ``order_id``): publish them soon. ``look`` says whether
        the next pass also looks for due deliveries rather than waiting for its poll; by
        default it does when no order is named (a resend, say). ``look=False`` without an
        order: events of orders unknown here (``scanpay deliver``'s SQLite watch)."""
        self._changed = True
        if look is None:
            look = order_id is None
        if look:
            self._looked = float("-inf")
        self._poke()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def _poke(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def run_once(self) -> int:
        """Record finished attempts, publish, then lease and start due deliveries (one
        database call and transaction, or two at once on PostgreSQL); returns how many
        deliveries were started."""
        started = self.published = 0
        while True:
            done, self._done = self._done, []
            changed, self._changed = self._changed, False
            now = asyncio.get_running_loop().time()
            look = bool(done) or now - self._looked >= self.poll_seconds
            if look:
                self._looked = now
            room = self.concurrency - len(self._inflight)
            if room < max(1, self.concurrency // 4) and self._inflight:
                room = 0  # claim in batches: each claim costs database round trips
            # (should this fail, ``done`` is not recorded: the leases run out and those
            # deliveries are sent again, as after a crash)
            endpoints = EndpointRoom(self.per_endpoint, dict(self._busy))
            if done and self.outbox.records_apart:
                cycle = await self._record_beside(done, room, changed, look, endpoints)
            else:
                cycle = await self.outbox.cycle(self.name, self.lease_seconds, room, done,
                                                PUBLISH_BATCH, changed, look,
                                                endpoints)  # fmt: skip
                for outcome, held in zip(done, cycle.kept, strict=True):
                    _log(outcome, held)
            for due in cycle.claimed:
                self._busy[due.endpoint_id] = self._busy.get(due.endpoint_id, 0) + 1
                task = asyncio.create_task(self._deliver(due), name=f"webhook-{due.delivery_id}")
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            started += len(cycle.claimed)
            self.published += cycle.published
            if cycle.published < PUBLISH_BATCH:
                return started

    async def _record_beside(
        self, done: list[Outcome], room: int, changed: bool, look: bool, endpoints: EndpointRoom
    ) -> Cycle:
        """The pass with ``done`` recorded in a transaction of its own at the same time
        (PostgreSQL): the next deliveries are leased while the last ones are recorded,
        rather than after. The two touch different rows (the claim takes no leased row),
        and an order's next event waits for its earlier one's record as it does anyway."""
        recorded, cycle = await asyncio.gather(
            self.outbox.record_many(self.name, done),
            self.outbox.cycle(self.name, self.lease_seconds, room, (), PUBLISH_BATCH, changed,
                              look, endpoints),
            return_exceptions=True,
        )  # fmt: skip
        if isinstance(recorded, BaseException):  # leases run out: sent again, as after a crash
            log.warning("webhook record failed: %s", type(recorded).__name__)
        else:
            for outcome, held in zip(done, recorded, strict=True):
                _log(outcome, held)
        if isinstance(cycle, BaseException):
            raise cycle
        return cycle

    async def drain(self) -> None:
        """Wait for the deliveries in flight and record them (tests and shutdown)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        """Record the attempts finished since the last flush, in one transaction (one per
        attempt would make the database, not the receivers, the limit)."""
        done, self._done = self._done, []
        if not done:
            return
        kept = await self.outbox.record_many(self.name, done)
        for outcome, held in zip(done, kept, strict=True):
            _log(outcome, held)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery crashed", exc_info=task.exception())
        self._poke()

    async def _deliver(self, due: Due) -> None:
        try:
            await self._attempt(due)
        finally:
            left = self._busy.get(due.endpoint_id, 1) - 1
            if left > 0:
                self._busy[due.endpoint_id] = left
            else:
                self._busy.pop(due.endpoint_id, None)

    async def _attempt(self, due: Due) -> None:
        now = self.clock()
        headers = sign_headers(due.secrets, due.public_id, int(now.timestamp()), due.body)
        answer = await self.sender.post(due.url, headers, due.body)
        done = self.clock()
        attempt = Attempt(done, answer.status, answer.latency_ms, answer.excerpt, answer.error)
        disable = None
        next_at = None
        if answer.status == GONE:
            disable = "410 Gone"
        elif not answer.ok:
            asked = retry_after(answer.retry_after, done) if answer.status in SLOW_DOWN else None
            delay = next_delay(self.schedule, due.attempts + 1, asked)
            next_at = None if delay is None else done + timedelta(seconds=delay)
        self._done.append(Outcome(due, attempt, next_at, answer.ok, disable))

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        published_at = -self.batch_seconds  # when the last pass that published began
        interval = 0.0  # how long after it the next pass may start
        while not self._stopping:
            self._wakeup.clear()
            began = loop.time()
            try:
                started = await self.run_once()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("webhook pass: %.1f ms, %d started, %d published, %d in flight",
                              (loop.time() - began) * 1e3, started, self.published,
                              len(self._inflight))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a pass failing must not end the task
                log.warning("webhook pass failed: %s", type(exc).__name__)
            if self.published:
                published_at = began
                interval = min(self.batch_seconds, BATCH_BASE + BATCH_PER_ROW * self.published)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            # Let wake-ups that come together share a pass, and start a pass no sooner than
            # ``interval`` after the last one that published: under load each pass then
            # publishes many rows in one transaction instead of one transaction per change,
            # while a payment after a quiet spell (or after a pass that only recorded
            # attempts) is published at once.
            wait = published_at + interval - loop.time()
            await asyncio.sleep(max(COALESCE_SECONDS, wait))

    async def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="scanpay-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._poke()
            await self._task
            self._task = None
        await self.drain()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def _log(outcome: Outcome, kept: bool) -> None:
    due, attempt, next_at, delivered, disable = outcome
    if delivered:
        log.info("webhook delivered event=%s endpoint=%s status=%s ms=%s",
                 due.public_id, due.endpoint_id, attempt.status_code,
                 attempt.latency_ms)  # fmt: skip
        return
    what = attempt.status_code if attempt.status_code is not None else attempt.error
    log.warning("webhook failed event=%s endpoint=%s answer=%s next=%s%s%s",
                due.public_id, due.endpoint_id, what,
                next_at.isoformat() if next_at else "none (gave up)",
                f" endpoint disabled: {disable}" if disable else "",
                "" if kept else " (lease lost: recorded late)")  # fmt: skip
