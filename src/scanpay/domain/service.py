"""Use cases: place an order, apply what WeChat Pay reports, reconcile by query.

Persist before calling: the order and its attempt (with its ``out_trade_no``) are stored
before WeChat is asked for a ``code_url``, so a crash in between leaves a ``creating``
attempt that a retry (same ``Idempotency-Key``) or a reconciler can finish with identical
parameters. Money moves only on a verified report whose merchant, app, amount and currency
match the stored attempt; everything else becomes an alert event and never a payment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    CURRENCY,
    AttemptStatus,
    NativeOrderRequest,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentReport,
    new_attempt_id,
    new_order_id,
    new_out_trade_no,
    utcnow,
)
from scanpay.domain.ports import (
    Applied,
    AttemptUpdate,
    IdempotencyClaim,
    LifecycleStore,
    PaymentGateway,
    PlacedOrder,
    ReceivedNotification,
    SurplusRefunder,
)
from scanpay.domain.query_log import Asker, QueryRecord, QueryRecorder
from scanpay.domain.reconciler import LifecyclePolicy
from scanpay.domain.trade_state import PaymentMeaning, meaning_of, trigger_for
from scanpay.errors import ApiError, InvalidTransitionError, RetryableApiError, ScanpayError

log = logging.getLogger(__name__)


class ReportVerdict(StrEnum):
    APPLIED = "applied"  # the order changed status
    DUPLICATE = "duplicate"  # already applied; nothing changed
    NOTED = "noted"  # a fact that changes no order (not paid yet, second payment, ...)
    REJECTED = "rejected"  # does not match what we stored: alert, nothing changed


@dataclass(frozen=True)
class ReportOutcome:
    verdict: ReportVerdict
    reason: str
    order_id: str | None

    @property
    def acknowledged(self) -> bool:
        """Whether WeChat should stop re-sending this report."""
        return self.verdict is not ReportVerdict.REJECTED


# Decides, from the stored attempt and its order's status, what a report does (see
# :meth:`PaymentLedger.settle_payment`); None leaves it to the general path.
Judge: TypeAlias = Callable[[PaymentAttempt, OrderStatus], ReportOutcome | None]


class PaymentLedger(LifecycleStore, Protocol):
    """The store as the payment use cases need it: the lifecycle store plus the one-
    transaction settlement of a common report."""

    async def settle_payment(
        self,
        report: PaymentReport,
        judge: Judge,
        trigger: Trigger,
        data: Mapping[str, Any],
        receipt: ReceivedNotification | None,
    ) -> ReportOutcome | None:
        """In one transaction: find the report's attempt and its order's status, ask
        ``judge``; on APPLIED make the compare-and-set transition by ``trigger`` (event row
        with ``data``, attempt paid), on DUPLICATE change nothing; store ``receipt`` with the
        outcome. None, with nothing written, when the attempt is unknown, ``judge`` declines
        or the compare-and-set loses a race."""
        ...


class PaymentService:
    """The merchant's use cases over a store and a gateway. ``on_change(order_id)`` is
    called after every committed event, so live streams can wake up."""

    def __init__(
        self,
        store: PaymentLedger,
        gateway: PaymentGateway,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[str], None] | None = None,
        policy: LifecyclePolicy | None = None,
        refunder: SurplusRefunder | None = None,
        query_log: QueryRecorder | None = None,
    ) -> None:
        self.query_log = query_log  # where active queries are recorded (None: nowhere)
        self.store = store
        self.gateway = gateway
        self.policy = policy or LifecyclePolicy()
        self.refunder = refunder
        self._clock = clock
        self._on_change = on_change or (lambda _order_id: None)

    def now(self) -> datetime:
        return self._clock()

    def notify_change(self, order_id: str) -> None:
        """Wake whoever follows ``order_id`` (status streams) after a committed change."""
        self._on_change(order_id)

    def new_attempt(self, order: Order, now: datetime) -> PaymentAttempt:
        """A fresh attempt (new ``out_trade_no``) for ``order``, with its window and its
        first scheduled look."""
        expires_at = self.policy.attempt_expiry(now, order.expires_at)
        return PaymentAttempt(
            id=new_attempt_id(),
            order_id=order.id,
            out_trade_no=new_out_trade_no(now),
            api_version=self.gateway.api_version,
            appid=self.gateway.appid,
            mchid=self.gateway.mchid,
            amount=order.amount,
            currency=CURRENCY,
            status=AttemptStatus.CREATING,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            next_query_at=min(now + self.policy.query_delay(0), expires_at),
        )

    async def place_order(
        self,
        amount: int,
        description: str,
        claim: IdempotencyClaim | None = None,
        *,
        return_url: str | None = None,
    ) -> PlacedOrder:
        now = self._clock()
        order = Order(
            id=new_order_id(),
            amount=amount,
            description=description,
            status=OrderStatus.PENDING,
            created_at=now,
            updated_at=now,
            expires_at=now + self.policy.order_deadline,
            return_url=return_url,
        )
        attempt = self.new_attempt(order, now)
        placed = await self.store.create_order(order, attempt, claim)
        self._on_change(placed.order.id)
        if placed.attempt.status is not AttemptStatus.CREATING:
            return placed
        attempt = await self.open_attempt(placed.order, placed.attempt)
        fresh = await self.store.get_order(placed.order.id)
        return PlacedOrder(fresh, attempt, placed.created)

    async def open_attempt(self, order: Order, attempt: PaymentAttempt) -> PaymentAttempt:
        """Ask WeChat for the attempt's ``code_url`` (identical parameters on every retry)."""
        request = NativeOrderRequest(
            out_trade_no=attempt.out_trade_no,
            description=order.description,
            amount=attempt.amount,
            currency=attempt.currency,
            product_id=order.id[:32],
            time_expire=attempt.expires_at,
        )
        try:
            code_url = await self.gateway.create_native_order(request)
        except ApiError as exc:
            if isinstance(exc, RetryableApiError) or exc.code == "RETURN_FAIL":
                raise  # may be transient: leave the attempt 'creating' for a retry
            log.warning("unified order refused out_trade_no=%s code=%s",
                        attempt.out_trade_no, exc.code)  # fmt: skip
            await self.store.fail_attempt(attempt.id, exc.code)
            self._on_change(order.id)
            raise
        activated = await self.store.activate_attempt(attempt.id, code_url)
        self._on_change(order.id)
        return activated

    async def apply_payment_report(
        self, report: PaymentReport, receipt: ReceivedNotification | None = None
    ) -> ReportOutcome:
        """Apply a *verified* report (notification or query answer) exactly once. With a
        ``receipt`` (a notification as received; its outcome and detail are filled in here)
        the notification log row is written too, in the same transaction when possible."""
        meaning = meaning_of(report.trade_state)
        trigger = trigger_for(meaning)
        if trigger is not None:
            # The common case in one transaction: a matching payment of a pending order, or
            # a repeat of one already applied. Everything else takes the general path.
            data = _event_data(report)
            judge = _judge(report, meaning, trigger)
            settled = await self.store.settle_payment(report, judge, trigger, data, receipt)
            if settled is not None:
                if settled.verdict is ReportVerdict.APPLIED and settled.order_id is not None:
                    self._on_change(settled.order_id)
                    if receipt is None:  # notification handlers log their own line
                        log.info("order paid order=%s out_trade_no=%s source=%s",
                                 settled.order_id, report.out_trade_no,
                                 report.source.value)  # fmt: skip
                return settled
        outcome = await self._apply(report, meaning)
        if receipt is not None:
            await self.store.record_notification(
                replace(receipt, outcome=outcome.verdict.value, detail=outcome.reason)
            )
        return outcome

    async def _apply(self, report: PaymentReport, meaning: PaymentMeaning) -> ReportOutcome:
        """The general path: unknown attempts, mismatches, non-payments, races and
        payments for orders settled otherwise."""
        attempt = await self.store.find_attempt(report.out_trade_no)
        if attempt is None:
            await self.store.record_alert(
                None, "unknown_out_trade_no",
                {"out_trade_no": report.out_trade_no, "source": report.source.value},
            )  # fmt: skip
            return ReportOutcome(ReportVerdict.REJECTED, "unknown_out_trade_no", None)
        mismatch = _mismatch(attempt, report, meaning)
        if mismatch is not None:
            await self.store.record_alert(
                attempt.order_id,
                mismatch,
                {
                    "out_trade_no": report.out_trade_no,
                    "source": report.source.value,
                    "reported_amount": report.amount,
                    "reported_currency": report.currency,
                },
            )
            self._on_change(attempt.order_id)
            if not report.source.value.startswith("notification"):  # those log their own line
                log.warning("payment report rejected out_trade_no=%s reason=%s source=%s",
                            report.out_trade_no, mismatch, report.source.value)  # fmt: skip
            return ReportOutcome(ReportVerdict.REJECTED, mismatch, attempt.order_id)
        trigger = trigger_for(meaning)
        if trigger is None:
            return ReportOutcome(ReportVerdict.NOTED, meaning.value, attempt.order_id)
        if attempt.status in (AttemptStatus.PAID, AttemptStatus.SURPLUS):
            return ReportOutcome(ReportVerdict.DUPLICATE, "already_paid", attempt.order_id)
        order = await self.store.get_order(attempt.order_id)
        if order.status is OrderStatus.PENDING:
            applied = await self._pay(order.id, trigger, report, attempt)
            if applied is not None and applied.event is not None:
                self._on_change(order.id)
                log.info("order paid order=%s out_trade_no=%s source=%s",
                         order.id, report.out_trade_no, report.source.value)  # fmt: skip
                return ReportOutcome(ReportVerdict.APPLIED, trigger.value, order.id)
            order = await self.store.get_order(order.id)
        # Not applied: either a concurrent duplicate of this very attempt won (the attempt is
        # paid in the same transaction as the order), or the order was settled otherwise.
        current = await self.store.find_attempt(report.out_trade_no)
        if current is not None and current.status in (AttemptStatus.PAID, AttemptStatus.SURPLUS):
            return ReportOutcome(ReportVerdict.DUPLICATE, "already_paid", order.id)
        # Money arrived for an order paid by another attempt, or closed/expired: never a
        # second payment. Flag it once (compare-and-set on the attempt) and give it back.
        reason = (
            "second_payment" if order.status is not OrderStatus.CLOSED else "payment_after_close"
        )
        retry_at = self._clock() + self.policy.query_delay(0)
        event = await self.store.mark_surplus(
            attempt.id,
            report.transaction_id,
            reason,
            {
                "out_trade_no": report.out_trade_no,
                "transaction_id": report.transaction_id,
                "amount": attempt.amount,
                "source": report.source.value,
                "action": "refund" if self.refunder is not None else "manual",
            },
            retry_at if self.refunder is not None else None,
        )
        if event is None:
            return ReportOutcome(ReportVerdict.DUPLICATE, "already_flagged", order.id)
        self._on_change(order.id)
        log.warning("payment for a settled order order=%s out_trade_no=%s reason=%s",
                    order.id, report.out_trade_no, reason)  # fmt: skip
        await self.refund_surplus(await self.store.get_attempt(attempt.id))
        return ReportOutcome(ReportVerdict.NOTED, reason, order.id)

    async def refund_surplus(self, attempt: PaymentAttempt) -> bool:
        """Refund a surplus attempt in full (idempotency key from its ``out_trade_no``, so
        repeated or concurrent calls refund once). False when it must be retried later."""
        if self.refunder is None or attempt.status is not AttemptStatus.SURPLUS:
            return False
        try:
            await self.refunder.refund_surplus(attempt, surplus_refund_key(attempt.out_trade_no))
        except ScanpayError as exc:
            log.warning("surplus refund out_trade_no=%s failed: %s (will retry)",
                        attempt.out_trade_no, exc.code)  # fmt: skip
            return False
        await self.store.schedule(attempt.id, None)
        log.info("surplus refunded out_trade_no=%s", attempt.out_trade_no)
        return True

    async def _pay(
        self, order_id: str, trigger: Trigger, report: PaymentReport, attempt: PaymentAttempt
    ) -> Applied | None:
        """The transition, or None when the order was settled another way meanwhile."""
        try:
            return await self.store.apply_trigger(
                order_id,
                trigger,
                _event_data(report),
                AttemptUpdate(attempt.id, AttemptStatus.PAID, report.transaction_id),
            )
        except InvalidTransitionError:
            return None

    async def reconcile(self, order_id: str, asker: Asker = Asker.CONSOLE) -> ReportOutcome:
        """Ask WeChat about the order's current attempt and apply the verified answer."""
        attempt = await self.store.current_attempt(order_id)
        _report, outcome = await self.query_attempt(attempt, asker)
        return outcome

    async def query_attempt(
        self, attempt: PaymentAttempt, asker: Asker
    ) -> tuple[PaymentReport, ReportOutcome]:
        """Query WeChat about ``attempt``, apply the verified answer, and record the query
        (answer or error, and the outcome) in the query log. Errors are raised after being
        recorded."""
        report, answered = await self.ask_wechat(attempt, asker)
        try:
            outcome = await self.apply_payment_report(report)
        except ScanpayError as exc:
            await self._record_query(replace(answered, error=_error_of(exc)))
            raise
        await self.record_answer(answered, outcome.verdict.value, outcome.reason)
        return report, outcome

    async def ask_wechat(
        self, attempt: PaymentAttempt, asker: Asker
    ) -> tuple[PaymentReport, QueryRecord]:
        """Query WeChat about ``attempt`` without applying the answer: the report and the
        query's record so far (for :meth:`record_answer`). A failed call is recorded and
        raised."""
        base = QueryRecord(
            attempt_id=attempt.id,
            order_id=attempt.order_id,
            out_trade_no=attempt.out_trade_no,
            asked_at=self.now(),
            asker=asker,
            api_version=attempt.api_version.value,
        )
        try:
            report = await self.gateway.query_payment(attempt.out_trade_no)
        except ScanpayError as exc:
            await self._record_query(replace(base, error=_error_of(exc)))
            raise
        answered = replace(
            base, trade_state=report.trade_state.value, transaction_id=report.transaction_id or None
        )
        return report, answered

    async def record_answer(self, answered: QueryRecord, verdict: str, reason: str) -> None:
        """Record an answered query with what scanpay made of it."""
        await self._record_query(replace(answered, verdict=verdict, reason=reason))

    async def _record_query(self, record: QueryRecord) -> None:
        if self.query_log is None:
            return
        try:
            await self.query_log.record_query(record)
        except Exception as exc:  # noqa: BLE001 - the record must never fail the query
            log.warning("query log: not recorded out_trade_no=%s (%s)",
                        record.out_trade_no, type(exc).__name__)  # fmt: skip


def _error_of(exc: ScanpayError) -> str:
    """A failed query's code and class for the query log (never the message: no secrets)."""
    return f"{exc.code} ({type(exc).__name__})"[:128]


def surplus_refund_key(out_trade_no: str) -> str:
    """The refund idempotency key of a surplus payment: one refund per ``out_trade_no``."""
    return f"surplus-{out_trade_no}"


def _event_data(report: PaymentReport) -> dict[str, str]:
    return {
        "out_trade_no": report.out_trade_no,
        "transaction_id": report.transaction_id,
        "source": report.source.value,
    }


def _judge(report: PaymentReport, meaning: PaymentMeaning, trigger: Trigger) -> Judge:
    """The decision the store takes under its transaction, from the stored attempt and its
    order's status: pay, duplicate, or None (leave it to the general path)."""

    def judge(attempt: PaymentAttempt, status: OrderStatus) -> ReportOutcome | None:
        if _mismatch(attempt, report, meaning) is not None:
            return None  # the general path records the alert
        if attempt.status in (AttemptStatus.PAID, AttemptStatus.SURPLUS):
            return ReportOutcome(ReportVerdict.DUPLICATE, "already_paid", attempt.order_id)
        if status is OrderStatus.PENDING:
            return ReportOutcome(ReportVerdict.APPLIED, trigger.value, attempt.order_id)
        return None

    return judge


def _mismatch(
    attempt: PaymentAttempt, report: PaymentReport, meaning: PaymentMeaning
) -> str | None:
    if report.mchid != attempt.mchid:
        return "mchid_mismatch"
    if report.appid != attempt.appid:
        return "appid_mismatch"
    if meaning is PaymentMeaning.PAID:
        if report.amount != attempt.amount:
            return "amount_mismatch"
        if report.currency != attempt.currency:
            return "currency_mismatch"
    return None
