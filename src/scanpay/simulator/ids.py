"""Identifiers shaped like WeChat's own (PROTOCOL.md 1.2 and 1.6); randomness lives here."""

from __future__ import annotations

import secrets
import string
from datetime import datetime
from typing import Final

from scanpay.wechat.fields import format_v2_time

_ALNUM: Final = string.ascii_letters + string.digits
_OPENID_CHARS: Final = _ALNUM + "-_"


def _pick(alphabet: str, size: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(size))


def digits(size: int) -> str:
    return _pick(string.digits, size)


def nonce() -> str:
    return _pick(_ALNUM, 32)


def code_url() -> str:
    """``weixin://wxpay/bizpayurl?pr=`` and nine letters or digits."""
    return "weixin://wxpay/bizpayurl?pr=" + _pick(_ALNUM, 9)


def prepay_id(moment: datetime) -> str:
    """``wx`` + ``yyyyMMddHHmmss`` (Beijing) + 22 lower-case hex characters."""
    return "wx" + format_v2_time(moment) + secrets.token_hex(11)


def transaction_id(moment: datetime) -> str:
    """28 digits: ``4200`` + ``yyyyMMdd`` (Beijing) + 16 random digits."""
    return "4200" + format_v2_time(moment)[:8] + digits(16)


def openid() -> str:
    return "o" + _pick(_OPENID_CHARS, 27)


def mchid() -> str:
    return "19" + digits(8)


def appid() -> str:
    return "wx" + secrets.token_hex(8)


def api_key() -> str:
    """32 letters and digits, as the merchant platform lets a merchant set them."""
    return _pick(_ALNUM, 32)


def public_key_id() -> str:
    return "PUB_KEY_ID_" + digits(34)
