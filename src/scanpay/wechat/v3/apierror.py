"""v3 error answers (``{"code","message","detail"}``) mapped onto the exception tree.

Codes are normalised to the current spelling (``ORDERNOTEXIST`` -> ``ORDER_NOT_EXIST``,
``SYSTEMERROR`` -> ``SYSTEM_ERROR`` ...). ``SYSTEM_ERROR``, ``FREQUENCY_LIMITED``,
``BANK_ERROR`` and any 5xx are :class:`RetryableApiError`; the rest :class:`ApiError`. Every
error carries the ``Request-ID`` and the HTTP status. :func:`error_body` builds the answer on
WeChat's side.
"""

from __future__ import annotations

from typing import Final

from scanpay.errors import ApiError, MalformedMessageError, RetryableApiError
from scanpay.wechat.v3.jsonbody import dump_json, parse_json

LEGACY_CODES: Final = {
    "ORDERNOTEXIST": "ORDER_NOT_EXIST",
    "SYSTEMERROR": "SYSTEM_ERROR",
    "NOTENOUGH": "NOT_ENOUGH",
    "RULELIMIT": "RULE_LIMIT",
    "NOAUTH": "NO_AUTH",
    "ORDERCLOSED": "ORDER_CLOSED",
    "ORDERPAID": "ORDER_PAID",
    "SIGNERROR": "SIGN_ERROR",
    "PARAMERROR": "PARAM_ERROR",
    "RATELIMIT_EXCEEDED": "FREQUENCY_LIMITED",
    "REFUNDNOTEXIST": "RESOURCE_NOT_EXISTS",
}
RETRYABLE: Final = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR"})
_MAX_MESSAGE: Final = 200


def normalise_code(code: str) -> str:
    upper = code.strip().upper()
    return LEGACY_CODES.get(upper, upper)


def parse_error(status: int, body: bytes, request_id: str | None) -> ApiError:
    """The typed error for a non-2xx answer (returned, for the caller to raise)."""
    code = f"HTTP_{status}"
    message = ""
    try:
        data = parse_json(body) if body else {}
    except MalformedMessageError:
        data = {}
    raw_code = data.get("code")
    if isinstance(raw_code, str) and raw_code:
        code = normalise_code(raw_code)
    raw_message = data.get("message")
    if isinstance(raw_message, str):
        message = raw_message[:_MAX_MESSAGE]
    cls = RetryableApiError if code in RETRYABLE or status >= 500 else ApiError
    return cls(message, code=code, request_id=request_id, http_status=status)


def error_body(code: str, message: str, detail: dict[str, object] | None = None) -> bytes:
    """WeChat's side: an error answer body."""
    value: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        value["detail"] = detail
    return dump_json(value)
