"""API v3 response and notification signatures, checked and made (PROTOCOL.md 3.3).

The signed string is three lines, each ending in ``\\n``::

    Wechatpay-Timestamp\\n
    Wechatpay-Nonce\\n
    BODY\\n        the raw bytes received; empty for a 204, so the line is just "\\n"

``Wechatpay-Signature`` is base64(SHA256withRSA) by the key ``Wechatpay-Serial`` names: a
WeChat Pay public key (``PUB_KEY_ID_...``) or a platform certificate (hex serial). Checks run
in this order: headers present exactly once (names case-insensitive), signature type, timestamp
within 300 s of ``now`` either way, probe signatures (``WECHATPAY/SIGNTEST/``), serial trusted,
signature valid. The simulator signs with :func:`sign_response`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple, Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from scanpay.errors import MalformedMessageError, SignatureError, StaleMessageError
from scanpay.wechat.keys import TrustStore
from scanpay.wechat.v3.sign import SCHEME, WINDOW, sign_message, verify_message

TIMESTAMP: Final = "Wechatpay-Timestamp"
NONCE: Final = "Wechatpay-Nonce"
SIGNATURE: Final = "Wechatpay-Signature"
SERIAL: Final = "Wechatpay-Serial"
SIGNATURE_TYPE: Final = "Wechatpay-Signature-Type"
REQUEST_ID: Final = "Request-ID"
PROBE_PREFIX: Final = "WECHATPAY/SIGNTEST/"
_new_tuple: Final = tuple.__new__


class MultiHeaders(Protocol):
    """httpx.Headers-like: every (name, value) pair, repeats included."""

    def multi_items(self) -> list[tuple[str, str]]: ...


HeaderSource = MultiHeaders | Mapping[str, str] | Iterable[tuple[str, str]]


def header_pairs(headers: HeaderSource) -> list[tuple[str, str]]:
    """All header pairs, repeats kept (httpx ``multi_items``, a mapping, or raw pairs)."""
    if type(headers) is dict:  # the common case, kept cheap
        return list(headers.items())
    multi = getattr(headers, "multi_items", None)
    if callable(multi):  # httpx and Starlette: already a fresh list of str pairs
        return list(multi())
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]  # type: ignore[union-attr]


def single_header(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    """The one value of ``name`` (case-insensitive); ``None`` if absent, error if repeated."""
    wanted = name.lower()
    found = [value for key, value in pairs if key.lower() == wanted]
    if len(found) > 1:
        raise MalformedMessageError(f"header {name} appears more than once")
    return found[0] if found else None


class SignedHeaders(NamedTuple):
    """The Wechatpay-* headers of one response or notification (immutable; a NamedTuple
    because it is built on every verification and costs a third of a frozen dataclass)."""

    timestamp: str
    nonce: str
    signature: str
    serial: str
    signature_type: str = SCHEME

    def as_dict(self) -> dict[str, str]:
        return {
            TIMESTAMP: self.timestamp,
            NONCE: self.nonce,
            SIGNATURE: self.signature,
            SERIAL: self.serial,
            SIGNATURE_TYPE: self.signature_type,
        }


# the headers read, in SignedHeaders field order (the first four are required), and the
# position of each by lower-cased name
_NAMES: Final = (TIMESTAMP, NONCE, SIGNATURE, SERIAL, SIGNATURE_TYPE)
_SLOTS: Final = {name.lower(): index for index, name in enumerate(_NAMES)}
_SPELLINGS: Final = {**_SLOTS, **{name: index for index, name in enumerate(_NAMES)}}


def read_signed_headers(headers: HeaderSource) -> SignedHeaders:
    """Pick the Wechatpay-* headers; missing or repeated ones are malformed.

    One pass over the headers; only the five Wechatpay-* names are kept (others may repeat).
    Names spelled as WeChat or an HTTP library spells them (``Wechatpay-Nonce``,
    ``wechatpay-nonce``) are found without lower-casing; any other spelling is lower-cased.
    """
    found: list[str | None] = [None, None, None, None, None]
    known, slot_of = _SPELLINGS.get, _SLOTS.get
    if type(headers) is dict:  # keys only; the value is fetched for the five wanted
        for key in headers:
            slot = known(key)  # the usual spellings need no lower-casing
            if slot is None:
                slot = slot_of(key.lower())
                if slot is None:
                    continue
            if found[slot] is not None:  # another spelling of a name already seen
                raise MalformedMessageError(f"header {_NAMES[slot]} appears more than once")
            found[slot] = headers[key]
    else:
        for key, value in header_pairs(headers):
            slot = known(key)
            if slot is None:
                slot = slot_of(key.lower())
                if slot is None:
                    continue
            if found[slot] is not None:
                raise MalformedMessageError(f"header {_NAMES[slot]} appears more than once")
            found[slot] = value
    if not (found[0] and found[1] and found[2] and found[3]):
        missing = next(_NAMES[slot] for slot in range(4) if not found[slot])
        raise MalformedMessageError(f"header {missing} is missing")
    if not found[4]:
        found[4] = SCHEME
    # every slot now holds a str: the tuple is built straight from the list (what the
    # NamedTuple's generated __new__ does after binding five arguments, ~0.15 µs more)
    return _new_tuple(SignedHeaders, found)


def response_signing_string(timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """The exact bytes a response or notification signature covers."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def verify_signed(
    signed: SignedHeaders, body: bytes, trust: TrustStore, *, now: int, window: int = WINDOW
) -> None:
    """Check already-read headers against ``body``; see the module docstring for the order."""
    _check(signed, body, trust, now, window)


def _check(signed: SignedHeaders, body: bytes, trust: TrustStore, now: int, window: int) -> None:
    timestamp, nonce, signature, serial, signature_type = signed
    if signature_type != SCHEME:
        raise SignatureError("unsupported Wechatpay-Signature-Type")
    # check_timestamp, inlined (one call less on every verification); same checks, same errors
    if len(timestamp) > 12 or not timestamp.isdigit() or not timestamp.isascii():
        raise MalformedMessageError("timestamp is not Unix seconds")
    if not -window < now - int(timestamp) < window:
        raise StaleMessageError("timestamp outside the 5-minute window")
    if signature.startswith(PROBE_PREFIX):
        raise SignatureError("WeChat Pay signature probe (deliberately invalid)")
    key = trust.lookup(serial)
    verify_message(key, f"{timestamp}\n{nonce}\n".encode() + body + b"\n", signature)


def verify_response(
    headers: HeaderSource, body: bytes, trust: TrustStore, *, now: int, window: int = WINDOW
) -> SignedHeaders:
    """Verify a v3 response or notification over the exact bytes received."""
    signed = read_signed_headers(headers)
    _check(signed, body, trust, now, window)
    return signed


def sign_response(
    body: bytes, *, serial: str, private_key: RSAPrivateKey, timestamp: int, nonce: str
) -> dict[str, str]:
    """WeChat's side: the Wechatpay-* headers for ``body`` signed by the key named ``serial``."""
    signature = sign_message(private_key, response_signing_string(timestamp, nonce, body))
    return SignedHeaders(str(timestamp), nonce, signature, serial).as_dict()
