"""Refunds: the use case ``refund`` and what WeChat Pay reports about a refund.

Contract. ``RefundService.refund(order_id, amount, *, idempotency_key, reason, out_trade_no)``
checks the amount against what was paid minus what is already refunded or being refunded,
stores the refund (with a fresh unique ``out_refund_no``) *before* calling WeChat, then
submits it. WeChat's acceptance only means PROCESSING; the refund becomes SUCCESS, CLOSED or
ABNORMAL from a verified refund notification or query answer, through
:meth:`RefundService.apply_refund_report`. A SUCCESS of a refund of the order's paying
attempt moves the order to ``partially_refunded`` / ``refunded`` by the state machine, in the
same transaction as the refund row and the event row. A refund of another attempt of the same
order (a second, unwanted payment: ``out_trade_no=`` that attempt) never changes the order.

Idempotent by key: the same key with the same request returns the stored refund (and resubmits
it with the same ``out_refund_no`` if WeChat never accepted it); another request under the
same key raises :class:`ConflictError` (``IDEMPOTENCY_KEY_REUSED``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

from scanpay.domain.model import PaymentAttempt, check_amount, utcnow
from scanpay.domain.ports import OrderStore
from scanpay.errors import (
    ApiError,
    ConflictError,
    NotFoundError,
    RetryableApiError,
    TransportError,
    ValidationError,
)
from scanpay.wechat.states import RefundState

log = logging.getLogger(__name__)

MAX_REASON: Final = 80
_ALPHANUM: Final = string.ascii_letters + string.digits


class RefundStatus(StrEnum):
    SUBMITTING = "submitting"  # stored; WeChat has not (yet) accepted it
    PROCESSING = "processing"  # accepted by WeChat, money not yet back
    SUCCESS = "success"
    CLOSED = "closed"  # WeChat gave up; the amount is available again
    ABNORMAL = "abnormal"  # stuck (e.g. the payer's card is gone): needs a person
    FAILED = "failed"  # WeChat refused the request outright; nothing was refunded


# What each status may become. SUCCESS, CLOSED and FAILED are final.
REFUND_TRANSITIONS: Final[Mapping[RefundStatus, frozenset[RefundStatus]]] = {
    RefundStatus.SUBMITTING: frozenset(RefundStatus) - {RefundStatus.SUBMITTING},
    RefundStatus.PROCESSING: frozenset(
        {RefundStatus.SUCCESS, RefundStatus.CLOSED, RefundStatus.ABNORMAL}
    ),
    RefundStatus.ABNORMAL: frozenset({RefundStatus.SUCCESS, RefundStatus.CLOSED}),
    RefundStatus.SUCCESS: frozenset(),
    RefundStatus.CLOSED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}

# Refunds whose amount is no longer held against the payment.
RELEASED: Final = frozenset({RefundStatus.CLOSED, RefundStatus.FAILED})
# WeChat ended the refund without paying it out: alerted (issue 15)
NEEDS_ATTENTION: Final = frozenset({RefundStatus.CLOSED, RefundStatus.ABNORMAL})

STATUS_FOR_STATE: Final[Mapping[RefundState, RefundStatus]] = {
    RefundState.PROCESSING: RefundStatus.PROCESSING,
    RefundState.SUCCESS: RefundStatus.SUCCESS,
    RefundState.CLOSED: RefundStatus.CLOSED,
    RefundState.ABNORMAL: RefundStatus.ABNORMAL,
}


def new_refund_id(token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    return "rfd_" + token(16)


def new_out_refund_no(now: datetime, choose: Callable[[str], str] = secrets.choice) -> str:
    """``rf`` + UTC ``yymmddHHMMSS`` + 16 random letters/digits (30 characters)."""
    stamp = now.astimezone(UTC).strftime("%y%m%d%H%M%S")
    return "rf" + stamp + "".join(choose(_ALPHANUM) for _ in range(16))


def check_reason(value: str) -> str:
    if len(value) > MAX_REASON:
        raise ValidationError(f"reason must be at most {MAX_REASON} characters",
                              code="INVALID_REASON")  # fmt: skip
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("reason must not contain control characters", code="INVALID_REASON")
    return value


@dataclass(frozen=True)
class Refund:
    id: str
    order_id: str
    attempt_id: str
    out_trade_no: str
    out_refund_no: str
    amount: int
    total: int  # the attempt's paid amount
    currency: str
    reason: str
    status: RefundStatus
    settles_order: bool  # False: a refund of a second payment; the order does not change
    fingerprint: str
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    refund_id: str | None = None  # WeChat's id, once known
    failure: str | None = None


@dataclass(frozen=True)
class PlacedRefund:
    refund: Refund
    created: bool  # False: an idempotent replay returned a stored refund


@dataclass(frozen=True)
class RefundSubmission:
    """What the domain asks the gateway to refund."""

    out_refund_no: str
    out_trade_no: str
    amount: int
    total: int
    currency: str
    reason: str


@dataclass(frozen=True)
class RefundReport:
    """A verified statement by WeChat Pay about one refund (answer, notification or query)."""

    out_refund_no: str
    state: RefundState
    source: str
    refund_id: str = ""
    out_trade_no: str = ""
    amount: int | None = None
    mchid: str = ""


class RefundGateway(Protocol):
    async def submit_refund(self, submission: RefundSubmission) -> RefundReport:
        """Ask WeChat to refund; the same ``out_refund_no`` twice refunds once."""
        ...

    async def query_refund(self, out_refund_no: str) -> RefundReport: ...


class RefundStore(OrderStore, Protocol):
    async def paid_out_trade_no(self, order_id: str) -> str | None:
        """The ``out_trade_no`` the order's ``paid`` event names, if the order was paid."""
        ...

    async def find_refund_by_key(self, key: str) -> Refund | None: ...

    async def find_refund(self, out_refund_no: str) -> Refund | None: ...

    async def refunds_for_order(self, order_id: str) -> list[Refund]: ...

    async def create_refund(self, refund: Refund) -> PlacedRefund:
        """Store a new refund after checking, in the same transaction, the idempotency key,
        the order's status (when it settles the order) and the amount still refundable."""
        ...

    async def move_refund(
        self,
        refund_id: str,
        expected: RefundStatus,
        to: RefundStatus,
        *,
        wechat_refund_id: str | None = None,
        failure: str | None = None,
    ) -> Refund | None:
        """Compare-and-set the refund's status. SUCCESS of a settling refund also moves the
        order and writes its event in the same transaction. None when ``expected`` no longer
        holds."""
        ...


class RefundVerdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    NOTED = "noted"  # an older state than the one stored, or nothing to change
    REJECTED = "rejected"


@dataclass(frozen=True)
class RefundOutcome:
    verdict: RefundVerdict
    reason: str
    refund: Refund | None

    @property
    def acknowledged(self) -> bool:
        return self.verdict is not RefundVerdict.REJECTED


def fingerprint(order_id: str, amount: int, reason: str, out_trade_no: str | None) -> str:
    canonical = json.dumps(
        {"order_id": order_id, "amount": amount, "reason": reason, "out_trade_no": out_trade_no},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class RefundService:
    """Refund use cases over a store and a gateway (v2 or v3, as configured)."""

    def __init__(
        self,
        store: RefundStore,
        gateway: RefundGateway,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self._clock = clock
        self._on_change = on_change or (lambda _order_id: None)

    async def refund(
        self,
        order_id: str,
        amount: int,
        *,
        idempotency_key: str,
        reason: str = "",
        out_trade_no: str | None = None,
    ) -> PlacedRefund:
        """Refund ``amount`` fen of the order's payment (or of its attempt ``out_trade_no``).

        Raises ValidationError (amount/reason), NotFoundError, ConflictError (order not paid,
        key reused), ApiError (WeChat refused: the refund is stored as ``failed``),
        RetryableApiError / TransportError (the refund stays ``submitting``; call again with
        the same key to resubmit it with the same ``out_refund_no``).
        """
        check_amount(amount)
        check_reason(reason)
        if not idempotency_key:
            raise ValidationError("an idempotency key is required", code="INVALID_IDEMPOTENCY_KEY")
        print_ = fingerprint(order_id, amount, reason, out_trade_no)
        stored = await self.store.find_refund_by_key(idempotency_key)
        if stored is not None:
            if stored.fingerprint != print_:
                raise ConflictError("this Idempotency-Key was used with a different request",
                                    code="IDEMPOTENCY_KEY_REUSED")  # fmt: skip
            placed = PlacedRefund(stored, created=False)
        else:
            attempt, settles = await self._target(order_id, out_trade_no)
            now = self._clock()
            candidate = Refund(
                id=new_refund_id(),
                order_id=order_id,
                attempt_id=attempt.id,
                out_trade_no=attempt.out_trade_no,
                out_refund_no=new_out_refund_no(now),
                amount=amount,
                total=attempt.amount,
                currency=attempt.currency,
                reason=reason,
                status=RefundStatus.SUBMITTING,
                settles_order=settles,
                fingerprint=print_,
                created_at=now,
                updated_at=now,
                idempotency_key=idempotency_key,
            )
            placed = await self.store.create_refund(candidate)
            if placed.created:
                self._on_change(order_id)
        if placed.refund.status is not RefundStatus.SUBMITTING:
            return placed
        return PlacedRefund(await self.submit(placed.refund), placed.created)

    async def refund_surplus(self, attempt: PaymentAttempt, idempotency_key: str) -> None:
        """Refund a whole surplus attempt (a second payment); the order does not change.
        (:class:`scanpay.domain.ports.SurplusRefunder`; same key twice refunds once.)"""
        await self.refund(
            attempt.order_id,
            attempt.amount,
            idempotency_key=idempotency_key,
            reason="duplicate payment",
            out_trade_no=attempt.out_trade_no,
        )

    async def _target(self, order_id: str, out_trade_no: str | None) -> tuple[PaymentAttempt, bool]:
        await self.store.get_order(order_id)  # NotFoundError first
        paid_with = await self.store.paid_out_trade_no(order_id)
        wanted = out_trade_no or paid_with
        if wanted is None:
            raise ConflictError("the order has not been paid", code="ORDER_NOT_PAID")
        attempt = await self.store.find_attempt(wanted)
        if attempt is None or attempt.order_id != order_id:
            raise NotFoundError("no such payment attempt for this order")
        return attempt, wanted == paid_with

    async def submit(self, refund: Refund) -> Refund:
        """Send a stored ``submitting`` refund to WeChat (same ``out_refund_no`` every time)."""
        submission = RefundSubmission(
            out_refund_no=refund.out_refund_no,
            out_trade_no=refund.out_trade_no,
            amount=refund.amount,
            total=refund.total,
            currency=refund.currency,
            reason=refund.reason,
        )
        try:
            report = await self.gateway.submit_refund(submission)
        except (RetryableApiError, TransportError):
            raise  # outcome unknown or transient: stays 'submitting', resubmit later
        except ApiError as exc:
            if exc.code == "RETURN_FAIL":
                raise
            log.warning("refund refused out_refund_no=%s code=%s", refund.out_refund_no, exc.code)
            moved = await self.store.move_refund(
                refund.id, RefundStatus.SUBMITTING, RefundStatus.FAILED, failure=exc.code[:64]
            )
            self._on_change(refund.order_id)
            if moved is None:
                current = await self.store.find_refund(refund.out_refund_no)
                if current is not None and current.status is not RefundStatus.FAILED:
                    return current  # a notification or query got there first
            raise
        outcome = await self.apply_refund_report(report)
        if outcome.refund is not None:
            return outcome.refund
        current = await self.store.find_refund(refund.out_refund_no)
        return current if current is not None else refund

    async def apply_refund_report(self, report: RefundReport) -> RefundOutcome:
        """Apply a *verified* refund report exactly once (duplicates are no-ops)."""
        refund = await self.store.find_refund(report.out_refund_no)
        if refund is None:
            await self.store.record_alert(None, "unknown_out_refund_no",
                                          {"out_refund_no": report.out_refund_no,
                                           "source": report.source})  # fmt: skip
            return RefundOutcome(RefundVerdict.REJECTED, "unknown_out_refund_no", None)
        mismatch = await self._mismatch(refund, report)
        if mismatch is not None:
            await self.store.record_alert(
                refund.order_id,
                mismatch,
                {"out_refund_no": refund.out_refund_no, "source": report.source,
                 "reported_amount": report.amount},
            )  # fmt: skip
            self._on_change(refund.order_id)
            log.warning("refund report rejected out_refund_no=%s reason=%s",
                        refund.out_refund_no, mismatch)  # fmt: skip
            return RefundOutcome(RefundVerdict.REJECTED, mismatch, refund)
        target = STATUS_FOR_STATE[report.state]
        for _ in range(8):
            if refund.status is target:
                return RefundOutcome(RefundVerdict.DUPLICATE, target.value, refund)
            if target not in REFUND_TRANSITIONS[refund.status]:
                return RefundOutcome(RefundVerdict.NOTED, f"stale_{target.value}", refund)
            moved = await self.store.move_refund(
                refund.id, refund.status, target, wechat_refund_id=report.refund_id or None
            )
            if moved is not None:
                if target in NEEDS_ATTENTION:
                    await self._alert_unfinished(moved, report)
                self._on_change(refund.order_id)
                log.info("refund %s out_refund_no=%s order=%s", target.value,
                         refund.out_refund_no, refund.order_id)  # fmt: skip
                return RefundOutcome(RefundVerdict.APPLIED, target.value, moved)
            current = await self.store.find_refund(refund.out_refund_no)
            assert current is not None
            refund = current
        raise ConflictError("refund kept changing; gave up")

    async def _alert_unfinished(self, refund: Refund, report: RefundReport) -> None:
        """A refund WeChat closed (the amount is refundable again) or that went abnormal
        (money held; a person must act, e.g. apply-abnormal-refund): an alert on the order."""
        reason = f"refund_{refund.status.value}"
        await self.store.record_alert(
            refund.order_id,
            reason,
            {"out_refund_no": refund.out_refund_no, "amount": refund.amount,
             "source": report.source},
        )  # fmt: skip
        log.warning("refund %s out_refund_no=%s order=%s", refund.status.value,
                    refund.out_refund_no, refund.order_id)  # fmt: skip

    async def _mismatch(self, refund: Refund, report: RefundReport) -> str | None:
        if report.out_trade_no and report.out_trade_no != refund.out_trade_no:
            return "refund_out_trade_no_mismatch"
        if report.amount is not None and report.amount != refund.amount:
            return "refund_amount_mismatch"
        if report.mchid:
            attempt = await self.store.find_attempt(refund.out_trade_no)
            if attempt is not None and attempt.mchid != report.mchid:
                return "refund_mchid_mismatch"
        return None

    async def reconcile_refund(self, out_refund_no: str) -> RefundOutcome:
        """Query WeChat about one refund and apply the verified answer."""
        refund = await self.store.find_refund(out_refund_no)
        if refund is None:
            raise NotFoundError("no such refund")
        if refund.status is RefundStatus.SUBMITTING:
            submitted = await self.submit(refund)
            return RefundOutcome(RefundVerdict.APPLIED, submitted.status.value, submitted)
        return await self.apply_refund_report(await self.gateway.query_refund(out_refund_no))

    async def refunds(self, order_id: str) -> list[Refund]:
        await self.store.get_order(order_id)
        return await self.store.refunds_for_order(order_id)


__all__ = [
    "PlacedRefund",
    "Refund",
    "RefundGateway",
    "RefundOutcome",
    "RefundReport",
    "RefundService",
    "RefundStatus",
    "RefundStore",
    "RefundSubmission",
    "RefundVerdict",
]
