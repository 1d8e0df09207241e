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
On PostgreSQL a pass also takes new deliveries into a batch of this worker's (no row each
until its first attempt is recorded): they wait in a queue per endpoint for room, or in
``_waiting`` behind an earlier event of their order; the worker renews its batches' lease
and has them closed once every delivery in them has its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from scanpay.domain.model import utcnow
from scanpay.store.outbox import Attempt, Cycle, Due, EndpointRoom, Mine, OutboxStore, Outcome
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
# PostgreSQL: a worker takes new deliveries into its batches up to this many times its
# in-flight limits (the rest are written as rows for a claim), and sends them as room frees
QUEUE_FACTOR: Final = 8


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
        # PostgreSQL's batches (OutboxStore.cycle_sync): taken deliveries waiting for room
        # per endpoint, those waiting for an earlier event of their order, and per open
        # batch how many of its deliveries have no row yet; batches to close
        self._queue: dict[str, deque[Due]] = {}
        self._waiting: list[Due] = []
        self._batches: dict[int, int] = {}
        self._close: set[int] = set()
        self._stopping = False
        self._changed = False  # events written here since the last pass began
        self.published = 0  # rows the last pass published
        self._looked = float("-inf")  # when a pass last looked for due deliveries
        self._renewed = float("-inf")  # when a pass last renewed this worker's batches
        self._checked = float("-inf")  # when a pass last read the queued endpoints' state

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
            # (at least a few times per lease: a pass that looks also writes out the
            # batches of a worker that died, PostgreSQL)
            every = min(self.poll_seconds, self.lease_seconds / 4)
            look = bool(done) or now - self._looked >= every
            if look:
                self._looked = now
            queued = sum(len(q) for q in self._queue.values())
            room = self.concurrency - len(self._inflight) - queued
            if room < max(1, self.concurrency // 4) and self._inflight:
                room = 0  # claim in batches: each claim costs database round trips
            # (should this fail, ``done`` is not recorded: the leases run out and those
            # deliveries are sent again, as after a crash)
            endpoints = EndpointRoom(self.per_endpoint, dict(self._busy))
            # (renewing a batch locks its row, which the record that closes it then waits
            # for: a few times per lease is enough)
            renew = now - self._renewed >= self.lease_seconds / 4
            # (the queued deliveries' endpoints: deleted or rotated meanwhile, about once a
            # poll; a 410 parks its endpoint's queue at once, _attempt)
            check = bool(self._queue) and now - self._checked >= self.poll_seconds
            mine = self._mine(queued, renew, check)
            self._waiting, self._close = [], set()
            try:
                # (a 410 among them: recorded first in the pass's own transaction, so that
                # the deliveries it parked see their endpoint turned off)
                if done and self.outbox.records_apart and not any(o.disable for o in done):
                    cycle = await self._record_beside(done, room, changed, look, endpoints, mine)
                else:
                    cycle = await self.outbox.cycle(self.name, self.lease_seconds, room, done,
                                                    PUBLISH_BATCH, changed, look, endpoints,
                                                    mine)  # fmt: skip
                    for outcome, held in zip(done, cycle.kept, strict=True):
                        _log(outcome, held)
                    self._settle(done)
            except BaseException:
                self._waiting += mine.waiting
                self._close |= set(mine.close)
                raise
            if mine.batches:
                self._renewed = now
            if mine.endpoints:
                self._checked = now
                self._refresh(mine.endpoints, cycle.signing or {})
            for due in cycle.claimed:
                self._start(due)
            self._take(cycle, mine)
            started += len(cycle.claimed)
            self.published += cycle.published
            if cycle.published < PUBLISH_BATCH:
                return started

    def _mine(self, queued: int, renew: bool, check: bool) -> Mine:
        """What this worker holds of its batches (``renew``: those to renew), what more it
        may take, and (``check``) the endpoints of its queued deliveries."""
        most = self.concurrency * QUEUE_FACTOR - len(self._inflight) - queued - len(self._waiting)
        limit = self.per_endpoint * QUEUE_FACTOR if self.per_endpoint is not None else None
        busy = Counter(self._busy)
        busy.update({e: len(q) for e, q in self._queue.items()})
        # (full, it still takes an order's later events that must wait for an earlier one)
        take = (max(0, most), EndpointRoom(limit, dict(busy)))
        batches = tuple(self._batches) if renew else ()
        endpoints = tuple(sorted(self._queue)) if check else ()
        return Mine(batches, tuple(self._close), tuple(self._waiting), take, endpoints)

    def _refresh(self, asked: Sequence[str], signing: Mapping[str, tuple[str, ...]]) -> None:
        """Bring the queued deliveries of the endpoints ``asked`` up to date: an endpoint
        turned off since they were taken (deleted, or disabled by a 410 another process
        got) parks them; a rotated secret signs them from now on."""
        for endpoint in asked:
            queue = self._queue.get(endpoint)
            if not queue:
                continue
            now = signing.get(endpoint)
            if now is None:
                self._park(endpoint)
            elif any(d.secrets != now for d in queue):
                self._queue[endpoint] = deque(replace(d, secrets=now) for d in queue)

    def _park(self, endpoint: str) -> None:
        """Send no more of ``endpoint``'s queued deliveries: they wait, and the next pass,
        finding the endpoint turned off, writes them as rows (pending, or cancelled for a
        deleted endpoint), as the row a claim would have left there."""
        queue = self._queue.pop(endpoint, None)
        if queue:
            self._waiting += queue
            self._poke()

    def _take(self, cycle: Cycle, mine: Mine) -> None:
        """Queue what a pass took or freed; note what it wrote as rows."""
        if cycle.held is not None:
            self._waiting += cycle.held.waiting
            self._queue_up(cycle.held.ready)
            for due in cycle.held.rowed:
                self._settled(due)
        elif mine.waiting:  # (not looked at: they still wait)
            self._waiting += mine.waiting
        if cycle.batch is not None:
            self._batches[cycle.batch.id] = len(cycle.batch.ready) + len(cycle.batch.waiting)
            self._waiting += cycle.batch.waiting
            self._queue_up(cycle.batch.ready)
        self._start_queued()

    def _queue_up(self, dues: Sequence[Due]) -> None:
        for due in dues:
            self._queue.setdefault(due.endpoint_id, deque()).append(due)

    def _start_queued(self) -> None:
        """Start queued deliveries while there is room, an endpoint at a time in turn."""
        while self._queue and len(self._inflight) < self.concurrency:
            started = False
            for endpoint, queue in list(self._queue.items()):
                if len(self._inflight) >= self.concurrency:
                    break
                if self.per_endpoint is not None and (
                    self._busy.get(endpoint, 0) >= self.per_endpoint
                ):
                    continue
                self._start(queue.popleft())
                started = True
                if not queue:
                    del self._queue[endpoint]
            if not started:
                return

    def _start(self, due: Due) -> None:
        self._busy[due.endpoint_id] = self._busy.get(due.endpoint_id, 0) + 1
        task = asyncio.create_task(self._deliver(due), name=f"webhook-{due.delivery_id}")
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _closing(self, recorded: Sequence[Outcome]) -> list[int]:
        """The batches whose last deliveries without a row are among ``recorded``: closed
        in the same transaction as they are written."""
        counts = Counter(o.due.batch for o in recorded if o.due.batch in self._batches)
        return sorted(b for b, n in counts.items() if b is not None and self._batches[b] == n)

    def _settle(self, recorded: Sequence[Outcome], closed: Sequence[int] = ()) -> None:
        """Note the batches' deliveries now recorded (each has its row)."""
        for outcome in recorded:
            self._settled(outcome.due)
        self._close.difference_update(closed)

    def _settled(self, due: Due) -> None:
        if due.batch is None or due.batch not in self._batches:
            return
        left = self._batches[due.batch] - 1
        if left > 0:
            self._batches[due.batch] = left
        else:
            del self._batches[due.batch]
            self._close.add(due.batch)

    def _forget(self, failed: Sequence[Outcome]) -> None:
        """A record failed: stop renewing those batches, so that once their lease runs out
        another pass writes rows for what they still lack and it is sent again."""
        for outcome in failed:
            if outcome.due.batch is not None:
                self._batches.pop(outcome.due.batch, None)

    async def _record_beside(
        self,
        done: list[Outcome],
        room: int,
        changed: bool,
        look: bool,
        endpoints: EndpointRoom,
        mine: Mine,
    ) -> Cycle:
        """The pass with ``done`` recorded in a transaction of its own at the same time
        (PostgreSQL): the next deliveries are leased while the last ones are recorded,
        rather than after. The two touch different rows (the claim takes no leased row),
        and an order's next event waits for its earlier one's record as it does anyway."""
        closing = self._closing(done)
        recorded, cycle = await asyncio.gather(
            self.outbox.record_many(self.name, done, closing),
            self.outbox.cycle(self.name, self.lease_seconds, room, (), PUBLISH_BATCH, changed,
                              look, endpoints, mine),
            return_exceptions=True,
        )  # fmt: skip
        if isinstance(recorded, BaseException):  # leases run out: sent again, as after a crash
            log.warning("webhook record failed: %s", type(recorded).__name__)
            self._forget(done)
        else:
            for outcome, held in zip(done, recorded, strict=True):
                _log(outcome, held)
            self._settle(done, closing)
        if isinstance(cycle, BaseException):
            raise cycle
        return cycle

    async def drain(self) -> None:
        """Send what is in flight or queued and record it (tests and shutdown); then hand
        over what still waits (as rows) and close the batches that are done."""
        while self._inflight or self._queue:
            self._start_queued()
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await self.flush()
        if not (self._waiting or self._batches or self._close):
            return
        waiting, self._waiting = self._waiting, []
        left = Counter(self._batches)
        left.subtract(Counter(d.batch for d in waiting if d.batch is not None))
        done = [b for b, n in left.items() if n <= 0] + sorted(self._close)
        try:
            await self.outbox.release(self.name, waiting, done)
        except Exception as exc:  # noqa: BLE001 - their leases run out: rows are written then
            log.warning("webhook hand-over failed: %s", type(exc).__name__)
        self._batches.clear()
        self._close.clear()

    async def flush(self) -> None:
        """Record the attempts finished since the last flush, in one transaction (one per
        attempt would make the database, not the receivers, the limit)."""
        done, self._done = self._done, []
        if not done:
            return
        closing = self._closing(done)
        try:
            kept = await self.outbox.record_many(self.name, done, closing)
        except Exception:
            self._forget(done)
            raise
        for outcome, held in zip(done, kept, strict=True):
            _log(outcome, held)
        self._settle(done, closing)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery crashed", exc_info=task.exception())
        self._start_queued()
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
            self._park(due.endpoint_id)  # (not another attempt to an endpoint that is gone)
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
            poll = self.poll_seconds  # (holding batches: often enough to renew them)
            if self._batches:
                poll = min(poll, self.lease_seconds / 4)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
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
