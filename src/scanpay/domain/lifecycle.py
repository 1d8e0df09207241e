"""Expiry, replacement and active queries of payment attempts (issue 5's lifecycle).

Rules:

- An attempt is closed at WeChat when its payment window ends. Only after WeChat confirms
  the close is a new attempt (new ``out_trade_no``) made; a close answering "already paid"
  (v2 ``ORDERPAID``; for any other refusal the attempt is queried) makes the order paid
  instead, through the same verified path as notifications.
- An unpaid order past its overall deadline becomes ``expired`` once its attempt is closed.
- Open attempts without news are queried on the policy's backoff, and sooner when a checkout
  page asks (rate-limited per order); a ``creating`` attempt is re-opened with identical
  parameters. A surplus attempt (paid twice) is refunded until the refund is accepted.

:meth:`Lifecycle.look` is what the reconciler calls for a leased attempt; the checkout page
calls :meth:`Lifecycle.checkout_attempt`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from scanpay.domain.machine import Trigger
from scanpay.domain.model import AttemptStatus, Order, OrderStatus, PaymentAttempt
from scanpay.domain.query_log import Asker
from scanpay.domain.reconciler import AttemptHandler
from scanpay.domain.service import PaymentService
from scanpay.domain.trade_state import PaymentMeaning, meaning_of
from scanpay.errors import ApiError, InvalidTransitionError, NotFoundError, RetryableApiError

log = logging.getLogger(__name__)

# WeChat's answers to a close that mean "this out_trade_no can never be paid".
CLOSED_CODES = frozenset({"ORDERCLOSED", "ORDERNOTEXIST", "ORDER_NOT_EXIST"})


class CloseResult(StrEnum):
    CLOSED = "closed"
    PAID = "paid"


class Lifecycle(AttemptHandler):
    def __init__(self, service: PaymentService, *, wake: Callable[[], None] | None = None) -> None:
        self.service = service
        self.store = service.store
        self.policy = service.policy
        self._wake = wake or (lambda: None)

    # ---- closing ------------------------------------------------------------------------

    async def close_at_wechat(
        self, attempt: PaymentAttempt, asker: Asker = Asker.RECONCILER
    ) -> CloseResult:
        """Close the attempt at WeChat and record the answer. Raises when WeChat could not
        be asked (the caller tries again later); never makes a new attempt. ``asker``: who
        is closing (for the query log, when a refusal is settled by a query)."""
        try:
            await self.service.gateway.close_payment(attempt.out_trade_no)
        except ApiError as exc:
            if isinstance(exc, RetryableApiError) or exc.code == "RETURN_FAIL":
                raise
            if exc.code not in CLOSED_CODES:
                # ORDERPAID, or a v3 refusal: WeChat's query says what the attempt is.
                return await self._settle_by_query(attempt, exc.code, asker)
            if exc.code != "ORDERCLOSED" and attempt.status is AttemptStatus.ACTIVE:
                # an order WeChat gave us a code for cannot be unknown: ask before trusting
                return await self._settle_by_query(attempt, exc.code, asker)
        await self._closed(attempt, "closed_at_wechat")
        return CloseResult.CLOSED

    async def _settle_by_query(
        self, attempt: PaymentAttempt, why: str, asker: Asker
    ) -> CloseResult:
        report, _outcome = await self.service.query_attempt(attempt, asker)
        meaning = meaning_of(report.trade_state)
        if meaning is PaymentMeaning.PAID:
            log.info("close answered %s: paid out_trade_no=%s", why, attempt.out_trade_no)
            return CloseResult.PAID
        if meaning is PaymentMeaning.CLOSED:
            await self._closed(attempt, why)
            return CloseResult.CLOSED
        raise ApiError(f"close refused ({why}) but the attempt is {meaning.value}", code=why)

    async def _closed(self, attempt: PaymentAttempt, why: str) -> datetime | None:
        """Record the close; expire the order if its deadline passed. Returns the follow-up
        look (the order's deadline while it is pending, so it expires if nobody returns)."""
        order = await self.store.get_order(attempt.order_id)
        follow_up = order.expires_at if order.status is OrderStatus.PENDING else None
        await self.store.close_attempt(attempt.id, {"why": why}, follow_up)
        self.service.notify_change(attempt.order_id)
        if await self._expire_if_due(order, attempt.id):
            return None
        return follow_up

    async def _expire_if_due(self, order: Order, attempt_id: str) -> bool:
        """Expire a pending order past its deadline whose current attempt is closed."""
        now = self.service.now()
        if order.status is not OrderStatus.PENDING or order.expires_at is None:
            return False
        if now < order.expires_at:
            return False
        current = await self.store.current_attempt(order.id)
        if current.id != attempt_id or current.open:
            return False
        try:
            applied = await self.store.apply_trigger(
                order.id, Trigger.EXPIRE, {"out_trade_no": current.out_trade_no}
            )
        except InvalidTransitionError:
            return False  # paid or closed meanwhile
        if applied.event is not None:
            self.service.notify_change(order.id)
            log.info("order expired order=%s", order.id)
        return True

    # ---- the reconciler's look -----------------------------------------------------------

    async def look(self, attempt: PaymentAttempt) -> tuple[datetime | None, bool]:
        """Act on one leased attempt; returns (next look or None, whether WeChat was queried)."""
        now = self.service.now()
        status = attempt.status
        if status is AttemptStatus.SURPLUS:
            await self.service.refund_surplus(attempt)
            return (await self.store.get_attempt(attempt.id)).next_query_at, False
        if status is AttemptStatus.CLOSED:
            order = await self.store.get_order(attempt.order_id)
            if await self._expire_if_due(order, attempt.id):
                return None, False
            current = await self.store.current_attempt(order.id)
            pending = order.status is OrderStatus.PENDING and current.id == attempt.id
            return (order.expires_at if pending else None), False
        if status is not AttemptStatus.CREATING and status is not AttemptStatus.ACTIVE:
            return None, False
        if status is AttemptStatus.CREATING:
            if attempt.expired(now):
                return await self._close_expired(attempt), False
            order = await self.store.get_order(attempt.order_id)
            await self.service.open_attempt(order, attempt)
            return self.policy.next_query(attempt, now), False
        report, _outcome = await self.service.query_attempt(attempt, Asker.RECONCILER)
        meaning = meaning_of(report.trade_state)
        if meaning is PaymentMeaning.PAID:
            return (await self.store.get_attempt(attempt.id)).next_query_at, True
        if meaning is PaymentMeaning.CLOSED:
            return await self._closed(attempt, "closed_by_wechat"), True
        if attempt.expired(now):
            return await self._close_expired(attempt), True
        return self.policy.next_query(attempt, now), True

    async def _close_expired(self, attempt: PaymentAttempt) -> datetime | None:
        result = await self.close_at_wechat(attempt)
        fresh = await self.store.get_attempt(attempt.id)
        if result is CloseResult.PAID or not fresh.open:
            return fresh.next_query_at
        return None

    # ---- the checkout page ---------------------------------------------------------------

    async def checkout_attempt(self, order_id: str) -> PaymentAttempt:
        """The attempt the checkout page should show. An expired (or closed) attempt of a
        pending order is closed at WeChat and replaced by a new one first; an open attempt
        gets an early query (at most once per quiet period), done by the reconciler."""
        order = await self.store.get_order(order_id)
        current = await self.store.current_attempt(order_id)
        if order.status is not OrderStatus.PENDING:
            return current
        now = self.service.now()
        if current.open and not current.expired(now):
            if await self.store.nudge(order_id, now, self.policy.checkout_quiet.total_seconds()):
                self._wake()
            return current
        await self.replace(current)
        return await self.store.current_attempt(order_id)

    async def replace(self, attempt: PaymentAttempt) -> PaymentAttempt | None:
        """Close ``attempt`` at WeChat (if still open) and make its successor, holding the
        attempt's lease meanwhile. None when another worker holds it or nothing was made."""
        me = "checkout_" + secrets.token_hex(6)
        now = self.service.now()
        claimed = await self.store.claim(attempt.id, now, me, self.policy.lease.total_seconds())
        if claimed is None:
            return None
        next_at = claimed.next_query_at
        try:
            closing = claimed.open
            if closing and await self.close_at_wechat(claimed, Asker.CHECKOUT) is CloseResult.PAID:
                next_at = (await self.store.get_attempt(claimed.id)).next_query_at
                return None
            fresh = await self.store.get_attempt(claimed.id)
            next_at = fresh.next_query_at
            if fresh.status not in (AttemptStatus.CLOSED, AttemptStatus.FAILED):
                return None
            order = await self.store.get_order(claimed.order_id)
            if order.status is not OrderStatus.PENDING or (
                order.expires_at is not None and self.service.now() >= order.expires_at
            ):
                await self._expire_if_due(order, claimed.id)
                return None
            new = self.service.new_attempt(order, self.service.now())
            stored = await self.store.replace_attempt(claimed.id, new)
            if stored is None:
                return None
            next_at = None
            self.service.notify_change(order.id)
            log.info("attempt replaced order=%s old=%s new=%s",
                     order.id, claimed.out_trade_no, stored.out_trade_no)  # fmt: skip
            try:
                return await self.service.open_attempt(order, stored)
            except (ApiError, NotFoundError) as exc:
                log.warning("new attempt not opened yet out_trade_no=%s: %s",
                            stored.out_trade_no, exc.code)  # fmt: skip
                return stored
        finally:
            await self.store.release(claimed.id, me, next_at, False)
