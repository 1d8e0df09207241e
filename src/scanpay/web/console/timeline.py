"""One order's story as a single timeline: events, payment attempts, notifications
received, refunds, operator actions, and whatever the extension sources add (webhooks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from scanpay.domain.model import EventType
from scanpay.errors import ScanpayError
from scanpay.store.console_queries import OrderStory
from scanpay.store.operators import ActionRecord
from scanpay.web.console.state import TimelineEntry
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import decrypt_resource
from scanpay.wechat.v3.notify import parse_envelope

# Event data shown in the timeline; anything else stays in the database.
SHOWN: tuple[str, ...] = (
    "out_trade_no",
    "transaction_id",
    "source",
    "from",
    "trigger",
    "reason",
    "action",
    "out_refund_no",
    "amount",
    "expected",
    "received",
)


def build_timeline(
    story: OrderStory,
    actions: Sequence[ActionRecord],
    extra: Sequence[TimelineEntry],
    when: Callable[[datetime | None], str],
    money: Callable[[int], str],
) -> list[TimelineEntry]:
    """Every line of the order's story, oldest first (``when`` and ``money`` format times
    and amounts for the reader)."""
    entries: list[TimelineEntry] = []
    for _row_id, event in story.events:
        detail = {k: str(event.data[k]) for k in SHOWN if k in event.data}
        for key in ("amount", "expected", "received"):
            value = event.data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                detail[key] = money(value)
        if event.status is not None:
            detail["status"] = event.status.value
        kind = "alert" if event.type is EventType.ALERT else "event"
        entries.append(TimelineEntry(event.created_at, kind, event.type.value, detail))
    for attempt in story.attempts:
        entries.append(
            TimelineEntry(
                attempt.created_at,
                "attempt",
                attempt.out_trade_no,
                {
                    "api": attempt.api_version.value,
                    "status": attempt.status.value,
                    "code_url": attempt.code_url or "",
                    "expires_at": when(attempt.expires_at),
                    "queries": str(attempt.query_count),
                    "last_query_at": when(attempt.last_query_at) if attempt.last_query_at else "",
                },
            )
        )
    for note in story.notifications:
        entries.append(
            TimelineEntry(
                note.received_at,
                "notification",
                note.api,
                {
                    "outcome": note.outcome,
                    "detail": note.detail,
                    "bytes": str(note.size),
                    "address": note.source or "",
                    "href": f"/console/notifications/{note.id}",
                },
            )
        )
    for refund in story.refunds:
        entries.append(
            TimelineEntry(
                refund.created_at,
                "refund",
                refund.out_refund_no,
                {
                    "amount": money(refund.amount),
                    "status": refund.status.value,
                    "reason": refund.reason,
                    "out_trade_no": refund.out_trade_no,
                    "refund_id": refund.refund_id or "",
                    "updated_at": when(refund.updated_at),
                },
            )
        )
    for action in actions:
        detail = {k: str(v) for k, v in action.detail.items()}
        if isinstance(action.detail.get("amount"), int):
            detail["amount"] = money(action.detail["amount"])
        detail |= {"operator": action.operator_name, "outcome": action.outcome}
        detail["address"] = action.address
        entries.append(TimelineEntry(action.created_at, "operator", action.action, detail))
    entries.extend(extra)
    entries.sort(key=lambda entry: entry.at)
    return entries


def decrypted_v3(body: bytes, api_v3_key: Secret) -> str:
    """The decrypted resource of a stored, already verified v3 notification, pretty-printed."""
    try:
        envelope = parse_envelope(body)
        plaintext = decrypt_resource(envelope.resource, api_v3_key)
        return json.dumps(json.loads(plaintext), ensure_ascii=False, indent=2)
    except (ScanpayError, ValueError):
        return "(cannot be decrypted)"
