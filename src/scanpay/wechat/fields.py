"""Field rules shared by v2 and v3: merchant order numbers, amounts, time formats."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Final

from scanpay.errors import MalformedMessageError

OUT_TRADE_NO: Final = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_REFUND_NO: Final = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")


def check_out_trade_no(value: str) -> str:
    """Return ``value`` when it is a valid ``out_trade_no`` (6-32 of ``[0-9A-Za-z_-|*]``)."""
    if not OUT_TRADE_NO.fullmatch(value):
        raise MalformedMessageError("out_trade_no must be 6-32 characters of 0-9 A-Z a-z _ - | *")
    return value


def check_out_refund_no(value: str) -> str:
    if not OUT_REFUND_NO.fullmatch(value):
        raise MalformedMessageError(
            "out_refund_no must be 1-64 characters of 0-9 A-Z a-z _ - | * @"
        )
    return value


def check_amount(value: int, name: str = "amount") -> int:
    """Amounts are whole fen, at least 1 and below 2**31 (WeChat's Int)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise MalformedMessageError(f"{name} must be a whole number of fen from 1 to 2147483647")
    return value


def parse_fen(text: str, name: str) -> int:
    """Parse a decimal integer field of a received message (no sign, no spaces, no fraction)."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise MalformedMessageError(f"{name} is not a whole number of fen")
    return int(text)


def format_v2_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in Beijing time (v2)."""
    return moment.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def parse_v2_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise MalformedMessageError("time is not yyyyMMddHHmmss") from None


def format_v3_time(moment: datetime) -> str:
    """RFC 3339 with the +08:00 offset, as WeChat writes it (v3)."""
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def parse_v3_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedMessageError("time is not RFC 3339") from None
    if moment.tzinfo is None:
        raise MalformedMessageError("time has no UTC offset")
    return moment


def parse_v2_refund_time(text: str) -> datetime:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (v2 refund success times, bill rows)."""
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise MalformedMessageError("time is not yyyy-MM-dd HH:mm:ss") from None


def format_v2_refund_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


_YUAN: Final = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,8}))?")


def yuan_to_fen(text: str, name: str = "amount") -> int:
    """Exact conversion of a yuan amount (``12.30``, ``0.01000``, ``-1.5``) to whole fen.

    Integer arithmetic on the digits, never float; a value with a fraction of a fen
    (``0.005``) is refused rather than rounded.
    """
    match = _YUAN.fullmatch(text)
    if match is None:
        raise MalformedMessageError(f"{name} is not a yuan amount")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if fraction[2:].strip("0"):
        raise MalformedMessageError(f"{name} has a fraction of a fen")
    fen = int(whole) * 100 + int((fraction[:2] + "00")[:2])
    return -fen if sign else fen


def fen_to_yuan(fen: int, places: int = 2) -> str:
    """``1234`` -> ``12.34`` (``places`` >= 2 adds zeros, e.g. 5 for bill fee columns)."""
    if places < 2:
        raise ValueError("places must be at least 2")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}" + "0" * (places - 2)
