"""Delivers notifications to merchants and retries them on WeChat's schedule.

A notification is stored in the ledger first, then POSTed to its ``notify_url`` through an
injectable httpx transport. An answer that is not an acknowledgement (for v2: XML with
``return_code=SUCCESS``; anything else, an HTTP error or a timeout) schedules the next attempt
after 15s, 15s, 30s, 3m, 10m, 20m, 30m, 30m, 30m, 60m, 3h, 3h, 3h, 6h, 6h (PROTOCOL.md 2.10),
counted from the previous attempt on the simulator's clock; after the sixteenth attempt it
gives up. Every attempt is logged with the merchant's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import httpx

from scanpay.simulator.clock import SimClock
from scanpay.simulator.ledger import Attempt, Ledger, Notification
from scanpay.wechat.v2.notify import is_success_ack

RETRY_DELAYS: Final = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                       10800, 10800, 10800, 21600, 21600)  # fmt: skip
MAX_ANSWER_CHARS: Final = 2000
IDLE_POLL_SECONDS: Final = 1.0
log = logging.getLogger(__name__)

Acknowledges = Callable[[int, bytes], bool]


def v2_acknowledges(status: int, body: bytes) -> bool:
    return status == 200 and is_success_ack(body)


def v3_acknowledges(status: int, body: bytes) -> bool:
    return status in (200, 204)


ACKNOWLEDGERS: Final[dict[str, Acknowledges]] = {
    "payment_v2": v2_acknowledges,
    "payment_v3": v3_acknowledges,
    "refund_v2": v2_acknowledges,
    "refund_v3": v3_acknowledges,
}


class Notifier:
    """Background delivery loop plus an on-demand :meth:`deliver_due` for tests."""

    def __init__(
        self,
        ledger: Ledger,
        clock: SimClock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
        sign_headers: Callable[[Notification], dict[str, str]] | None = None,
    ) -> None:
        self._sign_headers = sign_headers
        self._ledger = ledger
        self._clock = clock
        self._transport = transport
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        #: called (under the delivery lock) before each round of deliveries, e.g. to settle
        #: refunds that became due and queue their notifications
        self.before_delivery: list[Callable[[], object]] = []
        #: replaces the plain one-attempt-each round (scanpay.simulator.fault_delivery)
        self.deliver_round: Callable[[list[Notification]], Awaitable[None]] | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                headers={"User-Agent": "Mozilla/4.0 (scanpay WeChat Pay simulator)"},
            )
        return self._http

    def _delivery_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        loop = asyncio.get_running_loop()
        wakeup = asyncio.Event()
        self._wakeup = wakeup

        def on_advance() -> None:
            loop.call_soon_threadsafe(wakeup.set)

        self._unsubscribe = self._clock.subscribe(on_advance)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="scanpay-sim-notifier")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            # Ask the loop to finish its current attempt and leave (no cancellation inside
            # an HTTP exchange), then wait for it.
            self._stopping = True
            self.wake()
            await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def wake(self) -> None:
        """Something became due (a payment); look now instead of at the next poll."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()
            await self.deliver_due()
            due = self._ledger.next_due()
            wait = IDLE_POLL_SECONDS
            if due is not None and not self._clock.frozen:
                wait = max(0.0, min(wait, due - self._clock.timestamp()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    async def deliver_due(self) -> int:
        """Make every attempt that is due now, wait for the answers; returns how many."""
        async with self._delivery_lock():
            for hook in self.before_delivery:
                hook()
            due = self._ledger.due_notifications(self._clock.timestamp())
            if self.deliver_round is not None:
                await self.deliver_round(due)
                return len(due)
            for notification in due:
                await self._attempt(notification)
            return len(due)

    async def _attempt(self, notification: Notification) -> None:
        at = self._clock.timestamp()
        self.record(notification, at, [await self.post(notification)])

    async def post(
        self,
        notification: Notification,
        *,
        body: bytes | None = None,
        tamper: Callable[[dict[str, str]], None] | None = None,
    ) -> tuple[int | None, bytes, str]:
        """POST one copy (``body`` replaces the stored one; ``tamper`` edits the signed
        headers); returns (HTTP status or None, answer, transport error)."""
        status: int | None = None
        answer = b""
        error = ""
        headers = {"Content-Type": notification.content_type}
        if notification.kind.endswith("_v3") and self._sign_headers is not None:
            headers.update(self._sign_headers(notification))  # fresh timestamp per attempt
        if tamper is not None:
            tamper(headers)
        content = notification.body if body is None else body
        try:
            response = await self._client().post(notification.url, content=content, headers=headers)
            status, answer = response.status_code, response.content
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ANSWER_CHARS]
        except Exception as exc:  # an in-process merchant app crashed: its HTTP 500
            log.exception("notify_url %s raised", notification.url)
            error = f"{type(exc).__name__} raised by the merchant app"
        return status, answer, error

    def acknowledges(self, notification: Notification, status: int | None, answer: bytes) -> bool:
        check = ACKNOWLEDGERS.get(notification.kind, v2_acknowledges)
        return status is not None and check(status, answer)

    def record(
        self, notification: Notification, at: float, copies: list[tuple[int | None, bytes, str]]
    ) -> None:
        """Log one attempt (the answer of the first copy acknowledged, else of the first
        copy) and schedule the next one on WeChat's timetable."""
        number = notification.attempts + 1
        acked = [c for c in copies if self.acknowledges(notification, c[0], c[1])]
        status, answer, error = (acked or copies)[0]
        acknowledged = bool(acked)
        if acknowledged:
            state, next_at = "delivered", None
        elif number > len(RETRY_DELAYS):
            state, next_at = "failed", None
        else:
            state, next_at = "pending", at + RETRY_DELAYS[number - 1]
        self._ledger.record_attempt(
            Attempt(
                notification_id=notification.id,
                number=number,
                at=at,
                http_status=status,
                answer=answer.decode("utf-8", "replace")[:MAX_ANSWER_CHARS],
                acknowledged=acknowledged,
                error=error,
            ),
            status=state,
            next_at=next_at,
        )
        log.info(
            "notification %s attempt %s for %s: %s",
            notification.id,
            number,
            notification.out_trade_no,
            state,
        )
