"""API v2 signatures (PROTOCOL.md 2.2).

The string that gets signed: every field except ``sign`` whose value is not empty, sorted by
name (byte order), joined as ``k1=v1&k2=v2``, then ``&key=<API v2 key>``. MD5 gives the upper
hex of ``md5(string)``; HMAC-SHA256 the upper hex of ``HMAC(key, string)``. A message is
verified with the algorithm named in its own ``sign_type`` field (MD5 when absent).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from scanpay.errors import MalformedMessageError, MissingSignatureError, SignatureError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType


def signing_string(fields: Mapping[str, str | int], key: Secret) -> bytes:
    """The exact bytes v2 hashes: sorted non-empty fields, then ``&key=``."""
    pairs = [
        f"{name}={value}"
        for name, value in sorted(fields.items())
        if name != "sign" and value != "" and value is not None
    ]
    pairs.append(f"key={key.reveal()}")
    return "&".join(pairs).encode("utf-8")


def sign_v2(
    fields: Mapping[str, str | int], key: Secret, sign_type: SignType = SignType.MD5
) -> str:
    """Compute ``sign`` for ``fields`` (which must already hold ``sign_type`` when not MD5)."""
    message = signing_string(fields, key)
    if sign_type is SignType.MD5:
        return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()
    return hmac.new(key.reveal().encode("utf-8"), message, hashlib.sha256).hexdigest().upper()


def declared_sign_type(fields: Mapping[str, str]) -> SignType:
    """The algorithm a received message says it is signed with."""
    text = fields.get("sign_type", "") or SignType.MD5.value
    try:
        return SignType(text)
    except ValueError:
        raise MalformedMessageError("sign_type must be MD5 or HMAC-SHA256") from None


def verify_v2(
    fields: Mapping[str, str], key: Secret, *, expected: SignType | None = None
) -> SignType:
    """Check ``fields['sign']`` over all received fields; return the sign type used.

    ``expected`` pins the algorithm (a reply must use the type of its request, and may leave
    ``sign_type`` out); a message declaring another type fails as a signature error.
    """
    received = fields.get("sign", "")
    if not received:
        raise MissingSignatureError("message has no sign")
    if "sign_type" in fields or expected is None:
        sign_type = declared_sign_type(fields)
    else:
        sign_type = expected
    if expected is not None and sign_type is not expected:
        raise SignatureError(f"message signed with {sign_type}, expected {expected}")
    computed = sign_v2(fields, key, sign_type)
    if not hmac.compare_digest(computed.encode(), received.upper().encode("utf-8", "replace")):
        raise SignatureError("sign does not match")
    return sign_type
