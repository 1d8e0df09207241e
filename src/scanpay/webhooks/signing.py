"""Standard Webhooks v1, symmetric scheme: signing, and verification for shops.

Signed bytes: ``{webhook-id}.{webhook-timestamp}.{body}`` (the body exactly as sent). The key
is the base64-decoded part of a ``whsec_…`` secret (24-64 random bytes); the MAC is
HMAC-SHA256, sent as ``v1,<base64>`` in ``webhook-signature``. During a secret rotation the
header holds several entries separated by spaces and a receiver accepts any that matches.

Standard library only: a shop can copy this module or import it from scanpay, or use the
``standardwebhooks`` package from PyPI (``Webhook(secret).verify(body, headers)``); both
accept the same messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Final

PREFIX: Final = "whsec_"
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
TOLERANCE_SECONDS: Final = 5 * 60


class WebhookVerificationError(Exception):
    """The message is not one signed with the given secret(s) (or is too old or too new)."""


def generate_secret(size: int = 32) -> str:
    """A new ``whsec_`` secret of ``size`` random bytes."""
    if not MIN_KEY_BYTES <= size <= MAX_KEY_BYTES:
        raise ValueError(f"a secret has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError (naming no part of it) if malformed."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` entry."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_headers(
    secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret given (rotation)."""
    entries = [signature(secret_key(s), msg_id, timestamp, body) for s in secrets_]
    if not entries:
        raise ValueError("at least one secret is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(entries),
    }


def verify(
    secret: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a received webhook; returns its ``webhook-id`` (the idempotency key).

    ``headers`` may be any mapping; names are matched case-insensitively. Raises
    :class:`WebhookVerificationError` when a header is missing, the timestamp is outside
    ``tolerance`` seconds of ``now``, or no ``v1`` entry matches any of the secrets.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    header = lower.get("webhook-signature")
    if not msg_id or not stamp or not header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a whole number") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("message timestamp too new")
    keys = [secret_key(secret)] if isinstance(secret, str) else [secret_key(s) for s in secret]
    offered = [entry.partition(",") for entry in header.split(" ")]
    for key in keys:
        expected = signature(key, msg_id, timestamp, body).partition(",")[2]
        for version, _, value in offered:
            if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
                return msg_id
    raise WebhookVerificationError("no matching signature")
