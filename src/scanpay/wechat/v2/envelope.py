"""The v2 request/response envelope, from both sides of the wire.

Client side: :func:`encode_request` adds ``appid``, ``mch_id``, ``nonce_str``, ``sign_type``
and ``sign``; :func:`decode_response` reads ``return_code`` first, verifies the signature of a
``SUCCESS`` answer with the request's sign type, then maps ``result_code=FAIL`` to typed errors.
Simulator side: :func:`decode_request` and :func:`encode_response` do the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from scanpay.errors import ApiError, MalformedMessageError, RetryableApiError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.sign import sign_v2, verify_v2
from scanpay.wechat.xmlcodec import dump_xml, parse_xml

RETRYABLE_CODES: Final = frozenset({"SYSTEMERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED"})

# return_code=FAIL carries only free text; these fragments name the usual protocol faults.
_RETURN_MSG_CODES: Final = (
    ("SYSTEMERROR", "SYSTEMERROR"),
    ("FREQUENCY_LIMITED", "FREQUENCY_LIMITED"),
    ("签名", "SIGNERROR"),
    ("SIGN", "SIGNERROR"),
    ("XML", "XML_FORMAT_ERROR"),
    ("POST", "REQUIRE_POST_METHOD"),
    ("UTF8", "NOT_UTF8"),
    ("UTF-8", "NOT_UTF8"),
)


def api_error(code: str, message: str = "", *, http_status: int | None = None) -> ApiError:
    """The typed error for a WeChat error code (retryable ones as :class:`RetryableApiError`)."""
    cls = RetryableApiError if code in RETRYABLE_CODES else ApiError
    return cls(message, code=code, http_status=http_status)


def return_fail_code(return_msg: str) -> str:
    """A code for a ``return_code=FAIL`` answer, read from its ``return_msg`` text."""
    upper = return_msg.upper()
    for fragment, code in _RETURN_MSG_CODES:
        if fragment in upper:
            return code
    return "RETURN_FAIL"


def raise_for_result(fields: Mapping[str, str], *, http_status: int | None = None) -> None:
    """Raise the typed error a response's ``return_code`` / ``result_code`` / ``err_code`` mean.

    Checks the codes only (no signature); :func:`decode_response` verifies in between.
    """
    return_code = fields.get("return_code", "")
    if return_code == "FAIL":
        msg = fields.get("return_msg", "")
        code = fields.get("error_code", "") or return_fail_code(msg)
        raise api_error(code, msg, http_status=http_status)
    if return_code != "SUCCESS":
        raise MalformedMessageError("response has no valid return_code")
    result_code = fields.get("result_code")
    if result_code == "FAIL":
        code = fields.get("err_code", "") or "FAIL"
        raise api_error(code, fields.get("err_code_des", ""), http_status=http_status)
    if result_code not in (None, "SUCCESS"):
        raise MalformedMessageError("response has no valid result_code")


@dataclass(frozen=True)
class V2Merchant:
    """The identity and key a v2 message is signed with."""

    appid: str
    mch_id: str
    key: Secret
    sign_type: SignType = SignType.MD5

    def __post_init__(self) -> None:
        if not self.appid or not self.mch_id:
            raise MalformedMessageError("appid and mch_id are required")


def encode_request(fields: Mapping[str, str | int], merchant: V2Merchant, *, nonce: str) -> bytes:
    """Sign and encode one request; empty values are left out."""
    message: dict[str, str | int] = {"appid": merchant.appid, "mch_id": merchant.mch_id}
    message.update({k: v for k, v in fields.items() if v != ""})
    message["nonce_str"] = nonce
    if merchant.sign_type is not SignType.MD5:
        message["sign_type"] = merchant.sign_type.value
    message["sign"] = sign_v2(message, merchant.key, merchant.sign_type)
    return dump_xml(message)


def decode_response(
    body: bytes, merchant: V2Merchant, *, http_status: int | None = None
) -> dict[str, str]:
    """Parse, verify and unwrap a response; raise :class:`ApiError` for FAIL answers."""
    fields = parse_xml(body)
    if fields.get("return_code") != "SUCCESS":
        raise_for_result(fields, http_status=http_status)
    verify_v2(fields, merchant.key, expected=merchant.sign_type)
    if (
        fields.get("appid", merchant.appid) != merchant.appid
        or fields.get("mch_id", merchant.mch_id) != merchant.mch_id
    ):
        raise MalformedMessageError("response names another merchant")
    raise_for_result(fields, http_status=http_status)
    return fields


def decode_request(body: bytes, key: Secret) -> tuple[dict[str, str], SignType]:
    """Parse and verify a request as WeChat would; returns the fields and their sign type."""
    fields = parse_xml(body)
    sign_type = verify_v2(fields, key)
    return fields, sign_type


def encode_response(
    fields: Mapping[str, str | int],
    key: Secret,
    sign_type: SignType,
    *,
    nonce: str,
) -> bytes:
    """A signed ``return_code=SUCCESS`` answer (business success or ``result_code=FAIL``)."""
    message: dict[str, str | int] = {"return_code": "SUCCESS", "return_msg": "OK"}
    message.update({k: v for k, v in fields.items() if v != ""})
    message["nonce_str"] = nonce
    if sign_type is not SignType.MD5:
        message["sign_type"] = sign_type.value
    message["sign"] = sign_v2(message, key, sign_type)
    return dump_xml(message)


def business_failure(err_code: str, err_code_des: str = "") -> dict[str, str]:
    """Fields of a ``result_code=FAIL`` answer, to pass to :func:`encode_response`."""
    return {"result_code": "FAIL", "err_code": err_code, "err_code_des": err_code_des}


def encode_failure(return_msg: str) -> bytes:
    """An unsigned ``return_code=FAIL`` answer (protocol-level failure)."""
    return dump_xml({"return_code": "FAIL", "return_msg": return_msg})
