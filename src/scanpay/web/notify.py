"""``POST /notify/v2`` and ``POST /notify/v2/refund``: WeChat Pay v2 notifications.

Refund notifications carry no signature: ``req_info`` is AES-256-ECB encrypted under the MD5
of the API v2 key, so a body that decrypts (after the envelope's appid/mch_id are checked) is
authentic; then the refund is matched by ``out_refund_no`` and cross-checked (out_trade_no,
amount, merchant) in :mod:`scanpay.domain.refunds`.

Raw body → content-type check → signature verification over every received field
(:func:`scanpay.wechat.v2.notify.verify_payment_notification`) → match and cross-check in
the domain → one transition → acknowledge. Every received body is kept with its outcome
(``notifications_received``); nothing else changes unless the notification is verified and
matches. Answers: ``SUCCESS`` XML (also for duplicates) or ``FAIL`` XML with a 4xx status,
which makes WeChat retry. Log lines carry ``out_trade_no`` and the outcome, never a key.
"""

from __future__ import annotations

import logging
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.domain.model import ReportSource
from scanpay.domain.ports import ReceivedNotification
from scanpay.errors import DecryptionError, MalformedMessageError, ProtocolError, SignatureError
from scanpay.web.context import get_context
from scanpay.web.gateway import refund_report_from_v2, report_from_v2
from scanpay.web.notify_docs import xml_operation
from scanpay.web.wiring import get_extras
from scanpay.wechat.v2.notify import ACK_SUCCESS, ack_failure, verify_payment_notification
from scanpay.wechat.v2.refund_notify import decrypt_refund_notification

log = logging.getLogger(__name__)
API: Final = "v2-payment"
REFUND_API: Final = "v2-refund"
XML_TYPES: Final = frozenset({"text/xml", "application/xml"})


def sender(request: Request) -> str | None:
    """The sender's address as the service sees it (uvicorn's proxy headers applied)."""
    return request.client.host if request.client else None


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/xml")


async def notify_v2(request: Request) -> Response:
    context = get_context(request)
    body = await request.body()
    source = sender(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    store = context.store

    async def refuse(outcome: str, detail: str, status: int) -> Response:
        await store.record_notification(
            ReceivedNotification(API, body, outcome, detail, source=source)
        )
        log.warning("notify v2 refused outcome=%s detail=%s", outcome, detail)
        return _xml(ack_failure(detail), status)

    # WeChat sends text/xml; a missing type is tolerated, a different one is refused.
    if content_type and content_type not in XML_TYPES:
        return await refuse("wrong_content_type", "content type must be XML", 415)
    merchant = get_extras(request).wechat.merchant_v2
    if merchant is None:
        return await refuse("not_configured", "API v2 is not configured", 404)
    try:
        notification = verify_payment_notification(body, merchant.key)
    except SignatureError as exc:
        return await refuse("bad_signature", exc.message or exc.code, 401)
    except (MalformedMessageError, ProtocolError) as exc:
        return await refuse("malformed", exc.message or exc.code, 400)
    report = report_from_v2(notification.status, ReportSource.NOTIFICATION_V2)
    # The body is stored with its outcome by the service (with the transition when it can).
    receipt = ReceivedNotification(API, body, "", "", report.out_trade_no, source)
    outcome = await context.service.apply_payment_report(report, receipt)
    log.info(
        "notify v2 out_trade_no=%s transaction_id=%s verdict=%s reason=%s",
        report.out_trade_no,
        report.transaction_id,
        outcome.verdict.value,
        outcome.reason,
    )
    if outcome.acknowledged:
        return _xml(ACK_SUCCESS)
    return _xml(ack_failure(outcome.reason), 422)


async def notify_v2_refund(request: Request) -> Response:
    context = get_context(request)
    extras = get_extras(request)
    body = await request.body()
    source = sender(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    store = context.store

    async def refuse(outcome: str, detail: str, status: int) -> Response:
        await store.record_notification(
            ReceivedNotification(REFUND_API, body, outcome, detail, source=source)
        )
        log.warning("notify v2 refund refused outcome=%s detail=%s", outcome, detail)
        return _xml(ack_failure(detail), status)

    if content_type and content_type not in XML_TYPES:
        return await refuse("wrong_content_type", "content type must be XML", 415)
    merchant = extras.wechat.merchant_v2
    if merchant is None:
        return await refuse("not_configured", "API v2 is not configured", 404)
    try:
        notification = decrypt_refund_notification(body, merchant)
    except DecryptionError as exc:
        return await refuse("bad_encryption", exc.message or exc.code, 401)
    except (MalformedMessageError, ProtocolError) as exc:
        return await refuse("malformed", exc.message or exc.code, 400)
    report = refund_report_from_v2(notification)
    outcome = await extras.refunds.apply_refund_report(report)
    await store.record_notification(
        ReceivedNotification(
            REFUND_API,
            body,
            outcome.verdict.value,
            outcome.reason,
            notification.out_trade_no,
            source,
        )
    )
    log.info(
        "notify v2 refund out_refund_no=%s verdict=%s reason=%s",
        report.out_refund_no,
        outcome.verdict.value,
        outcome.reason,
    )
    if outcome.acknowledged:
        return _xml(ACK_SUCCESS)
    return _xml(ack_failure(outcome.reason), 422)


# Plain Starlette routes (no FastAPI request handling on the hot path: the body is read raw
# anyway); scanpay.web.app puts them first and documents them in the OpenAPI document.
ROUTES: Final = (
    Route("/notify/v2", notify_v2, methods=["POST"]),
    Route("/notify/v2/refund", notify_v2_refund, methods=["POST"]),
)
OPENAPI: Final = {
    "/notify/v2": xml_operation("WeChat Pay API v2 payment notification (XML)"),
    "/notify/v2/refund": xml_operation(
        "WeChat Pay API v2 refund notification (XML, encrypted req_info)"
    ),
}
