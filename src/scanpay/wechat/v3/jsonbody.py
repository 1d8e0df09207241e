"""Strict JSON for v3 bodies: compact encoding, hostile-input-safe decoding.

Encoding is compact (``separators=(",", ":")``, UTF-8, no ASCII escaping) so that the bytes a
client signs are the bytes it sends. Decoding rejects invalid UTF-8, duplicate object keys,
``NaN``/``Infinity``, non-object top levels and bodies over :data:`MAX_BODY` bytes, all as
:class:`MalformedMessageError`; :func:`parse_authenticated_json`, for bytes already proven to
come from WeChat Pay, skips only the duplicate-key check (its docstring says why). The
``obj``/``text``/``texts``/``integer`` helpers read typed values out of a decoded object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final, NoReturn

from scanpay.errors import MalformedMessageError

JsonObject = dict[str, object]
MAX_BODY: Final = 1 << 20


def dump_json(value: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes to sign and send."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, object]]) -> JsonObject:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedMessageError("duplicate JSON key")
    return result


def _reject_constant(name: str) -> NoReturn:
    raise MalformedMessageError(f"JSON constant {name} is not allowed")


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
)
# The decoder's C scanner, called directly for bodies that start with "{" (all of WeChat's):
# JSONDecoder.decode adds two regex calls for surrounding white space (~0.7 µs a body).
# (scan_once is a public attribute of JSONDecoder that typeshed leaves out.)
_Scanner = Callable[[str, int], tuple[object, int]]
_SCAN: Final[_Scanner] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_SPACE: Final = " \t\n\r"


# For bytes already authenticated as WeChat Pay's (see parse_authenticated_json): the same
# decoder without the duplicate-key hook, so json's C scanner builds the dicts itself.
_AUTHENTICATED: Final = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN_AUTHENTICATED: Final[_Scanner] = _AUTHENTICATED.scan_once  # type: ignore[attr-defined]


def parse_json(body: bytes) -> JsonObject:
    """Decode a JSON object body; anything else is a :class:`MalformedMessageError`."""
    return _parse(body, _DECODER, _SCAN)


def parse_authenticated_json(body: bytes) -> JsonObject:
    """:func:`parse_json` for bytes whose origin is already proven, minus one check:
    duplicate object keys are not refused (the last one wins, as in ``json.loads``).

    Only for a notification body whose Wechatpay-Signature over these exact bytes has been
    verified, or for plaintext that AES-GCM has just authenticated with the API v3 key. A
    duplicate key is a danger when two parsers read the same bytes differently and one of
    them can be fed by an attacker; nobody but WeChat Pay (and, for GCM, the holder of the
    API v3 key) can produce bytes that pass those checks, and scanpay reads them with one
    parser, once. Everything else :func:`parse_json` refuses is still refused here (invalid
    UTF-8, trailing data, ``NaN``/``Infinity``, non-object top level, size, depth). Skipping
    the hook saves ~2.5 µs a notification (json's C scanner is fast only without one).
    """
    return _parse(body, _AUTHENTICATED, _SCAN_AUTHENTICATED)


def _parse(body: bytes, decoder: json.JSONDecoder, scan: _Scanner) -> JsonObject:
    if len(body) > MAX_BODY:
        raise MalformedMessageError("JSON body too large")
    try:
        text = body.decode("utf-8")
        if text[:1] == "{":
            value, end = scan(text, 0)
            if end != len(text) and text[end:].strip(_JSON_SPACE):
                raise MalformedMessageError("body is not valid JSON")
        else:  # leading white space, or not an object: the general decoder
            value = decoder.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError, StopIteration):
        raise MalformedMessageError("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedMessageError("JSON body must be an object")
    return value


def obj(container: Mapping[str, object], name: str, *, required: bool = True) -> JsonObject:
    value = container.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise MalformedMessageError(f"{name} must be an object")
    return value


def text(container: Mapping[str, object], name: str, *, required: bool = True) -> str:
    value = container.get(name)
    if type(value) is str and (value or not required):
        return value
    if value is None and not required:
        return ""
    raise MalformedMessageError(f"{name} must be a non-empty string")


def texts(
    container: Mapping[str, object], names: tuple[str, ...], *, required: bool = True
) -> list[str]:
    """:func:`text` for several names at once, in order (one call on hot paths)."""
    get = container.get
    values: list[str] = []
    for name in names:
        value = get(name)
        if type(value) is str and (value or not required):
            values.append(value)
        elif value is None and not required:
            values.append("")
        else:
            raise MalformedMessageError(f"{name} must be a non-empty string")
    return values


def integer(container: Mapping[str, object], name: str, *, required: bool = True) -> int:
    value = container.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessageError(f"{name} must be an integer")
    return value


def integers(container: Mapping[str, object], names: tuple[str, ...]) -> list[int]:
    """Optional :func:`integer` values for several names at once (absent or null is 0)."""
    get = container.get
    values: list[int] = []
    for name in names:
        value = get(name)
        if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
            values.append(value)
        elif value is None:
            values.append(0)
        else:  # bool, float, str, ...
            raise MalformedMessageError(f"{name} must be an integer")
    return values
