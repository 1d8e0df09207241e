"""``POST /notify/v3`` (and ``/notify/v3/refund``): WeChat Pay API v3 notifications.

Raw body and headers → content type → :meth:`V3Client.verify_notification` (Wechatpay-*
signature over the exact bytes, within the 5-minute window, by a trusted key; then AES-GCM
decryption with the API v3 key; then the typed resource, whose mchid must be ours) → the
domain: a ``TRANSACTION.SUCCESS`` goes to :meth:`PaymentService.apply_payment_report` (match by
``out_trade_no``, check appid, mchid, amount, currency; one compare-and-set), a ``REFUND.*``
to :meth:`RefundService.apply_refund_report`. Both paths take either event type.

Answers: ``204`` (also for duplicates); otherwise 4xx/5xx with ``{"code": "FAIL", "message":
...}`` so WeChat retries, with the status of :data:`scanpay.web.refusals.REFUSALS` (the same
as API v2 for the same kind of input). A verified body is kept whole with its outcome in
``notifications_received``, a refused one as its first bytes and digest; a sender past its
refusals gets 429; nothing else changes unless it verifies and matches. An unknown serial may
trigger a certificate download within per-serial and per-sender limits
(:class:`scanpay.client.v3.RefreshLimits`). One log line per notification, naming the outcome
and ids, never a key, header signature or decrypted payload.
"""

from __future__ import annotations

import logging
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.domain.model import ReportSource
from scanpay.domain.ports import ReceivedNotification
from scanpay.errors import (
    ApiError,
    DecryptionError,
    MissingSignatureError,
    ProtocolError,
    SignatureError,
    StaleMessageError,
    TransportError,
    UnknownKeyError,
)
from scanpay.observability.logs import note_notification
from scanpay.web.context import get_context
from scanpay.web.gateway import refund_report_from_v3, report_from_v3
from scanpay.web.notify_docs import json_operation
from scanpay.web.refusals import client_address, get_doorkeeper
from scanpay.web.wiring import get_extras
from scanpay.wechat.v3.notify import PaymentNotice, failure_body

log = logging.getLogger(__name__)
API: Final = "v3"
SIGNATURE_HEADER: Final = "wechatpay-signature"
JSON_TYPES: Final = frozenset({"application/json"})

# Each verification failure: the outcome recorded (its status: scanpay.web.refusals.REFUSALS).
# Most specific first.
FAILURES: Final[tuple[tuple[type[Exception], str], ...]] = (
    (StaleMessageError, "stale"),
    (UnknownKeyError, "unknown_serial"),
    (MissingSignatureError, "unsigned"),
    (SignatureError, "bad_signature"),
    (DecryptionError, "decryption_failed"),
    (ProtocolError, "malformed"),
    (TransportError, "unverifiable"),  # platform certificates could not be fetched
    (ApiError, "unverifiable"),
)


def _fail(message: str, status: int) -> Response:
    return Response(failure_body(message), status_code=status, media_type="application/json")


async def _notify_v3(request: Request) -> Response:
    context = get_context(request)
    extras = get_extras(request)
    keeper = get_doorkeeper(request)
    if keeper.limited(request, API):
        return _fail("too many refused notifications", 429)
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()

    async def refuse(outcome: str, detail: str) -> Response:
        return _fail(detail, await keeper.refuse(request, API, body, outcome, detail))

    if content_type and content_type not in JSON_TYPES:
        return await refuse("wrong_content_type", "content type must be application/json")
    client = extras.wechat.v3
    if client is None:
        return await refuse("not_configured", "API v3 is not configured")
    if not request.headers.get(SIGNATURE_HEADER):
        return await refuse("unsigned", "header Wechatpay-Signature is missing")
    sender = client_address(request)
    try:
        notice = await client.verify_notification(request.headers, body, sender=sender)
    except (ProtocolError, TransportError, ApiError) as exc:
        for kind, failure in FAILURES:
            if isinstance(exc, kind):
                return await refuse(failure, exc.message or exc.code)
        raise  # unreachable: every caught kind is in FAILURES
    order_id: str | None = None
    if isinstance(notice, PaymentNotice):
        report = report_from_v3(notice.transaction, ReportSource.NOTIFICATION_V3)
        what = "v3-payment"
        # The service stores the body with its outcome (with the transition when it can).
        receipt = ReceivedNotification(what, body, "", "", report.out_trade_no or None, sender)
        outcome = await context.service.apply_payment_report(report, receipt)
        verdict, reason, acknowledged = outcome.verdict.value, outcome.reason, outcome.acknowledged
        out_trade_no, order_id = report.out_trade_no, outcome.order_id
    else:
        refund_report = refund_report_from_v3(notice.refund, "notification_v3")
        refunded = await extras.refunds.apply_refund_report(refund_report)
        verdict, reason = refunded.verdict.value, refunded.reason
        acknowledged = refunded.acknowledged
        what, out_trade_no = "v3-refund", notice.refund.out_trade_no
        await context.store.record_notification(
            ReceivedNotification(what, body, verdict, reason, out_trade_no or None, sender)
        )
    note_notification(what, verdict, client=sender, out_trade_no=out_trade_no,
                      order_id=order_id, detail=reason)  # fmt: skip
    if acknowledged:
        return Response(status_code=204)
    return _fail(reason, 422)


async def notify_v3(request: Request) -> Response:
    """Payment and refund notifications (``/notify/v3`` and ``/notify/v3/refund``)."""
    return await _notify_v3(request)


ROUTES: Final = (
    Route("/notify/v3", notify_v3, methods=["POST"]),
    Route("/notify/v3/refund", notify_v3, methods=["POST"]),
)
OPENAPI: Final = {
    "/notify/v3": json_operation(
        "WeChat Pay API v3 notification (payment or refund; signed, encrypted JSON)"
    ),
    "/notify/v3/refund": json_operation(
        "WeChat Pay API v3 refund notification (same handling as /notify/v3)"
    ),
}
