"""API v3 notifications: verify, then decrypt, then parse (PROTOCOL.md 3.10, STYLE 13).

Order on receipt, each step with its own error: the Wechatpay-* headers and the signature over
the raw body (:mod:`scanpay.wechat.v3.verify`), the JSON envelope, ``resource.algorithm``,
AES-256-GCM with the API v3 key, then the typed resource: a :class:`PaymentNotice` for
``TRANSACTION.SUCCESS`` or a :class:`RefundNotice` for ``REFUND.SUCCESS`` / ``REFUND.ABNORMAL``
/ ``REFUND.CLOSED``. The simulator builds the body with :func:`build_notification` and signs
it with :func:`scanpay.wechat.v3.verify.sign_response`. Merchant answers: :data:`ACK_BODY`
(200/204) and :func:`failure_body` (4xx/5xx).

Every result is typed and immutable. :class:`Envelope`, :class:`PaymentNotice`,
:class:`RefundNotice` (and ``SignedHeaders``, ``EncryptedResource``) are NamedTuples: one of
each is built per notification and a NamedTuple costs about a third of a frozen dataclass.
``Transaction`` and ``Refund`` stay frozen dataclasses (callers use ``dataclasses.replace``) and
are filled through :func:`scanpay.wechat.v3.frozen.assemble`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import format_v3_time, parse_v3_time
from scanpay.wechat.keys import TrustStore
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import EncryptedResource, decrypt_resource, encrypt_resource
from scanpay.wechat.v3.jsonbody import (
    JsonObject,
    dump_json,
    obj,
    parse_authenticated_json,
    text,
    texts,
)
from scanpay.wechat.v3.refunds import Refund, refund_from_json
from scanpay.wechat.v3.sign import WINDOW
from scanpay.wechat.v3.transactions import Transaction, transaction_from_json
from scanpay.wechat.v3.verify import HeaderSource, SignedHeaders, verify_response

TRANSACTION_SUCCESS: Final = "TRANSACTION.SUCCESS"
REFUND_EVENTS: Final = frozenset({"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"})
RESOURCE_TYPE: Final = "encrypt-resource"
ACK_BODY: Final = b'{"code":"SUCCESS","message":"\xe6\x88\x90\xe5\x8a\x9f"}'


def failure_body(message: str = "失败") -> bytes:
    return dump_json({"code": "FAIL", "message": message})


class Envelope(NamedTuple):
    """The clear part of a notification."""

    id: str
    create_time: datetime
    event_type: str
    resource_type: str
    summary: str
    resource: EncryptedResource


class PaymentNotice(NamedTuple):
    envelope: Envelope
    transaction: Transaction
    signed: SignedHeaders


class RefundNotice(NamedTuple):
    envelope: Envelope
    refund: Refund
    signed: SignedHeaders


_ENVELOPE_TEXT: Final = ("id", "create_time", "event_type", "resource_type")
_ENVELOPE_FIELDS: Final = (*_ENVELOPE_TEXT, "summary", "resource")
_RESOURCE_FIELDS: Final = ("ciphertext", "nonce", "algorithm", "associated_data", "original_type")
_STR: Final = frozenset({str})
_OPTIONAL_STR: Final = frozenset({str, type(None)})
_new_tuple: Final = tuple.__new__


def parse_envelope(body: bytes) -> Envelope:
    """The clear part of a notification (call it on a body whose signature checked out).

    The usual shape is read in one pass (every field checked: required texts present and
    non-empty, optional ones text or absent, ``resource`` an object); anything else goes the
    field-by-field way, which names the offending field.
    """
    data = parse_authenticated_json(body)  # verified bytes only: see its docstring
    notification_id, create_time, event_type, kind, summary, resource = map(
        data.get, _ENVELOPE_FIELDS
    )
    if type(resource) is dict:
        ciphertext, nonce, algorithm, associated_data, original_type = map(
            resource.get, _RESOURCE_FIELDS
        )
        required = (notification_id, create_time, event_type, kind, ciphertext, nonce, algorithm)
        if (
            _STR.issuperset(map(type, required))
            and all(required)
            and _OPTIONAL_STR.issuperset(map(type, (summary, associated_data, original_type)))
        ):
            sealed = (ciphertext, nonce, associated_data or "", algorithm, original_type or "")
            return _new_tuple(  # the NamedTuples' own __new__ minus argument binding
                Envelope,
                (
                    notification_id,
                    parse_v3_time(create_time),  # type: ignore[arg-type]  # a str, checked
                    event_type,
                    kind,
                    summary or "",
                    _new_tuple(EncryptedResource, sealed),
                ),
            )
    return _envelope_checked(data)


def _envelope_checked(data: JsonObject) -> Envelope:
    """The field-by-field path: the reference for, and fallback of, the one above."""
    notification_id, create_time, event_type, resource_type = texts(data, _ENVELOPE_TEXT)
    return Envelope(
        notification_id,
        parse_v3_time(create_time),
        event_type,
        resource_type,
        text(data, "summary", required=False),
        EncryptedResource.from_json(obj(data, "resource")),
    )


def open_envelope(envelope: Envelope, api_v3_key: Secret | AESGCM) -> Transaction | Refund:
    """Decrypt and parse the resource of an already verified envelope."""
    if envelope.event_type != TRANSACTION_SUCCESS and envelope.event_type not in REFUND_EVENTS:
        raise MalformedMessageError("unsupported notification event_type")
    plaintext = decrypt_resource(envelope.resource, api_v3_key)
    data = parse_authenticated_json(plaintext)  # GCM just authenticated it
    if envelope.event_type == TRANSACTION_SUCCESS:
        return transaction_from_json(data)
    return refund_from_json(data)


def verify_notification(
    headers: HeaderSource,
    body: bytes,
    trust: TrustStore,
    api_v3_key: Secret | AESGCM,
    *,
    now: int,
    window: int = WINDOW,
) -> PaymentNotice | RefundNotice:
    """Verify a notification over its raw bytes, then decrypt and type it."""
    signed = verify_response(headers, body, trust, now=now, window=window)
    envelope = parse_envelope(body)
    resource = open_envelope(envelope, api_v3_key)
    if isinstance(resource, Transaction):
        return _new_tuple(PaymentNotice, (envelope, resource, signed))
    return _new_tuple(RefundNotice, (envelope, resource, signed))


def build_notification(
    resource: Transaction | Refund,
    api_v3_key: Secret | AESGCM,
    *,
    notification_id: str,
    create_time: datetime,
    nonce: str,
    event_type: str | None = None,
) -> bytes:
    """WeChat's side: the JSON body of a notification carrying ``resource`` encrypted."""
    if isinstance(resource, Transaction):
        event = event_type or TRANSACTION_SUCCESS
        plaintext, kind, summary = dump_json(resource.to_json()), "transaction", "支付成功"
    else:
        event = event_type or f"REFUND.{resource.status.value}"
        plaintext = dump_json(resource.to_json(notification=True))
        kind, summary = "refund", "退款状态变更"
    encrypted = encrypt_resource(
        plaintext, api_v3_key, nonce=nonce, associated_data=kind, original_type=kind
    )
    return dump_json(
        {
            "id": notification_id,
            "create_time": format_v3_time(create_time),
            "resource_type": RESOURCE_TYPE,
            "event_type": event,
            "summary": summary,
            "resource": encrypted.to_json(),
        }
    )
