"""``POST /notify/v2`` and ``POST /notify/v2/refund``: WeChat Pay v2 notifications.

Refund notifications carry no signature: ``req_info`` is AES-256-ECB encrypted under the MD5
of the API v2 key, so a body that decrypts (after the envelope's appid/mch_id are checked) is
authentic; then the refund is matched by ``out_refund_no`` and cross-checked (out_trade_no,
amount, merchant) in :mod:`scanpay.domain.refunds`.

Raw body → content-type check → signature verification over every received field
(:func:`scanpay.wechat.v2.notify.verify_payment_notification`) → match and cross-check in
the domain → one transition → acknowledge. Every received body is kept with its outcome
(``notifications_received``); nothing else changes unless the notification is verified and
matches. Answers: ``SUCCESS`` XML (also for duplicates, and for an authentic notification
reporting ``result_code=FAIL``: recorded, nothing changes) or ``FAIL`` XML with the status of
:data:`scanpay.web.refusals.REFUSALS` (always XML, 413 and 429 included), which makes WeChat
retry. Refused bodies are kept as their first bytes and digest; a sender past its refusals
gets 429. One log line per notification (:func:`note_notification`), never a key.
"""

from __future__ import annotations

import logging
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.domain.model import ReportSource
from scanpay.domain.ports import ReceivedNotification
from scanpay.errors import DecryptionError, MissingSignatureError, ProtocolError, SignatureError
from scanpay.observability.logs import note_notification
from scanpay.web.context import get_context
from scanpay.web.gateway import refund_report_from_v2, report_from_v2
from scanpay.web.notify_docs import xml_operation
from scanpay.web.refusals import client_address, get_doorkeeper
from scanpay.web.wiring import get_extras
from scanpay.wechat.v2.notify import (
    ACK_SUCCESS,
    ReportedFailure,
    ack_failure,
    verify_payment_notification,
)
from scanpay.wechat.v2.refund_notify import decrypt_refund_notification

log = logging.getLogger(__name__)
API: Final = "v2-payment"
REFUND_API: Final = "v2-refund"
XML_TYPES: Final = frozenset({"text/xml", "application/xml"})


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/xml")


def _refusal_of(exc: ProtocolError) -> str:
    """The outcome (scanpay.web.refusals.REFUSALS) of a v2 message that failed to verify."""
    if isinstance(exc, MissingSignatureError):
        return "unsigned"
    if isinstance(exc, SignatureError | DecryptionError):  # v2 refunds: decryption authenticates
        return "bad_signature"
    return "malformed"


async def _gate(request: Request, api: str) -> tuple[bytes, Response | None]:
    """The body, or the answer for a sender past its refusals or a non-XML body."""
    keeper = get_doorkeeper(request)
    if keeper.limited(request, api):
        return b"", _xml(ack_failure("too many refused notifications"), 429)
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # WeChat sends text/xml; a missing type is tolerated, a different one is refused.
    if content_type and content_type not in XML_TYPES:
        detail = "content type must be XML"
        status = await keeper.refuse(request, api, body, "wrong_content_type", detail)
        return body, _xml(ack_failure(detail), status)
    return body, None


async def _refuse(request: Request, api: str, body: bytes, outcome: str, detail: str) -> Response:
    status = await get_doorkeeper(request).refuse(request, api, body, outcome, detail)
    return _xml(ack_failure(detail), status)


async def notify_v2(request: Request) -> Response:
    context = get_context(request)
    body, early = await _gate(request, API)
    if early is not None:
        return early
    merchant = get_extras(request).wechat.merchant_v2
    if merchant is None:
        return await _refuse(request, API, body, "not_configured", "API v2 is not configured")
    client = client_address(request)
    try:
        notification = verify_payment_notification(body, merchant.key)
    except ReportedFailure as failure:
        # Authentic (the signature checked out): WeChat reports a failed payment. Recorded and
        # acknowledged, so WeChat stops repeating it; nothing changes.
        detail = f"result_code FAIL {failure.err_code}".strip()
        received = ReceivedNotification(
            API, body, "noted", detail, failure.out_trade_no or None, client
        )
        await context.store.record_notification(received)
        note_notification(API, "noted", client=client, out_trade_no=failure.out_trade_no,
                            detail=detail)  # fmt: skip
        return _xml(ACK_SUCCESS)
    except ProtocolError as exc:
        return await _refuse(request, API, body, _refusal_of(exc), exc.message or exc.code)
    report = report_from_v2(notification.status, ReportSource.NOTIFICATION_V2)
    # The body is stored with its outcome by the service (with the transition when it can).
    receipt = ReceivedNotification(API, body, "", "", report.out_trade_no, client)
    outcome = await context.service.apply_payment_report(report, receipt)
    note_notification(
        API,
        outcome.verdict.value,
        client=client,
        out_trade_no=report.out_trade_no,
        order_id=outcome.order_id,
        detail=outcome.reason,
    )
    if outcome.acknowledged:
        return _xml(ACK_SUCCESS)
    return _xml(ack_failure(outcome.reason), 422)


async def notify_v2_refund(request: Request) -> Response:
    context = get_context(request)
    extras = get_extras(request)
    body, early = await _gate(request, REFUND_API)
    if early is not None:
        return early
    merchant = extras.wechat.merchant_v2
    if merchant is None:
        detail = "API v2 is not configured"
        return await _refuse(request, REFUND_API, body, "not_configured", detail)
    try:
        notification = decrypt_refund_notification(body, merchant)
    except ProtocolError as exc:
        return await _refuse(request, REFUND_API, body, _refusal_of(exc), exc.message or exc.code)
    report = refund_report_from_v2(notification)
    outcome = await extras.refunds.apply_refund_report(report)
    await context.store.record_notification(
        ReceivedNotification(
            REFUND_API,
            body,
            outcome.verdict.value,
            outcome.reason,
            notification.out_trade_no,
            client_address(request),
        )
    )
    note_notification(
        REFUND_API,
        outcome.verdict.value,
        client=client_address(request),
        out_trade_no=notification.out_trade_no,
        detail=outcome.reason,
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
