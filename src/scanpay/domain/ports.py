"""The two seams of the domain: WeChat Pay (a gateway) and persistence (a store).

``scanpay.web.gateway.V2Gateway`` adapts :class:`scanpay.client.v2.V2Client` to
:class:`PaymentGateway`; ``scanpay.store.sql.SqlStore`` implements :class:`OrderStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from scanpay.domain.machine import Step, Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    Event,
    NativeOrderRequest,
    Order,
    PaymentAttempt,
    PaymentReport,
)


class PaymentGateway(Protocol):
    """WeChat Pay as the domain needs it, for one merchant and one API version."""

    @property
    def api_version(self) -> ApiVersion: ...

    @property
    def appid(self) -> str: ...

    @property
    def mchid(self) -> str: ...

    async def create_native_order(self, request: NativeOrderRequest) -> str:
        """Open the order at WeChat; return its ``code_url``. Same request twice is safe."""
        ...

    async def query_payment(self, out_trade_no: str) -> PaymentReport: ...

    async def close_payment(self, out_trade_no: str) -> None: ...


@dataclass(frozen=True)
class IdempotencyClaim:
    """A client's ``Idempotency-Key`` and a fingerprint of the request body it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    attempt: PaymentAttempt
    created: bool  # False when an idempotent replay returned an existing order


@dataclass(frozen=True)
class Applied:
    """What :meth:`OrderStore.apply_trigger` did: the order after it and the event, if any."""

    order: Order
    step: Step
    event: Event | None


@dataclass(frozen=True)
class AttemptUpdate:
    """The attempt change that goes with an order transition, in the same transaction."""

    attempt_id: str
    status: AttemptStatus
    transaction_id: str | None = None


@dataclass(frozen=True)
class ReceivedNotification:
    """A notification as it arrived, with what verification and processing made of it."""

    api: str
    body: bytes
    outcome: str
    detail: str
    out_trade_no: str | None = None
    source: str | None = None  # the sender's address, as the service saw it (issue 12)


class OrderStore(Protocol):
    """Persistence. Every write is a transaction; every status change writes its event row."""

    async def create_order(
        self, order: Order, attempt: PaymentAttempt, claim: IdempotencyClaim | None
    ) -> PlacedOrder:
        """Store a new order with its first attempt and a ``created`` event; with a claim,
        return the order stored under the same key instead (``ConflictError`` if the
        fingerprint differs)."""
        ...

    async def get_order(self, order_id: str) -> Order: ...

    async def current_attempt(self, order_id: str) -> PaymentAttempt: ...

    async def find_attempt(self, out_trade_no: str) -> PaymentAttempt | None: ...

    async def activate_attempt(self, attempt_id: str, code_url: str) -> PaymentAttempt: ...

    async def fail_attempt(self, attempt_id: str, reason: str) -> PaymentAttempt: ...

    async def apply_trigger(
        self,
        order_id: str,
        trigger: Trigger,
        data: Mapping[str, Any],
        attempt: AttemptUpdate | None = None,
    ) -> Applied:
        """Compare-and-set the order's status per the machine; write the event and the
        attempt update in the same transaction. A no-op writes nothing."""
        ...

    async def record_alert(
        self, order_id: str | None, reason: str, data: Mapping[str, Any]
    ) -> Event: ...

    async def events_after(self, order_id: str, seq: int) -> list[Event]: ...

    async def record_notification(self, received: ReceivedNotification) -> None: ...


class LifecycleStore(OrderStore, Protocol):
    """Persistence for expiry, replacement, active queries and surplus payments."""

    async def get_attempt(self, attempt_id: str) -> PaymentAttempt: ...

    async def claim_due(
        self, now: datetime, worker: str, lease_seconds: float, limit: int
    ) -> list[PaymentAttempt]:
        """Lease (compare-and-set) up to ``limit`` attempts whose next look is due."""
        ...

    async def claim(
        self, attempt_id: str, now: datetime, worker: str, lease_seconds: float
    ) -> PaymentAttempt | None:
        """Lease one attempt whatever its schedule; None when another worker holds it."""
        ...

    async def renew(
        self, attempt_id: str, now: datetime, worker: str, lease_seconds: float
    ) -> bool:
        """Extend ``worker``'s lease on the attempt if it still holds it (compare-and-set);
        False when the lease ran out and may be another worker's now."""
        ...

    async def release(
        self, attempt_id: str, worker: str, next_query_at: datetime | None, queried: bool
    ) -> bool: ...

    async def nudge(self, order_id: str, now: datetime, quiet_seconds: float) -> bool:
        """Bring the order's open attempt's next look forward, at most once per quiet."""
        ...

    async def schedule(self, attempt_id: str, at: datetime | None) -> None: ...

    async def close_attempt(
        self, attempt_id: str, data: Mapping[str, Any], next_query_at: datetime | None = None
    ) -> PaymentAttempt: ...

    async def replace_attempt(self, old_id: str, new: PaymentAttempt) -> PaymentAttempt | None:
        """Insert ``new`` as the one successor of closed ``old_id`` (None if lost/settled)."""
        ...

    async def mark_surplus(
        self,
        attempt_id: str,
        transaction_id: str,
        reason: str,
        data: Mapping[str, Any],
        next_query_at: datetime | None,
    ) -> Event | None:
        """Attempt -> surplus plus an alert event, once; None if already flagged or paid."""
        ...


class SurplusRefunder(Protocol):
    """Gives back a payment nobody should have made (a second paid attempt of one order)."""

    async def refund_surplus(self, attempt: PaymentAttempt, idempotency_key: str) -> None:
        """Refund the whole attempt; safe to call again with the same key."""
        ...
