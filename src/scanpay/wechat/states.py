"""WeChat Pay trade and refund states, shared by API v2 and v3 (PROTOCOL.md 1.4, 2.4, 3.6)."""

from __future__ import annotations

from enum import StrEnum


class TradeState(StrEnum):
    SUCCESS = "SUCCESS"
    REFUND = "REFUND"
    NOTPAY = "NOTPAY"
    CLOSED = "CLOSED"
    REVOKED = "REVOKED"
    USERPAYING = "USERPAYING"
    PAYERROR = "PAYERROR"
    ACCEPT = "ACCEPT"


class RefundState(StrEnum):
    SUCCESS = "SUCCESS"
    PROCESSING = "PROCESSING"
    CLOSED = "CLOSED"
    ABNORMAL = "ABNORMAL"


class SignType(StrEnum):
    """API v2 signature algorithms."""

    MD5 = "MD5"
    HMAC_SHA256 = "HMAC-SHA256"
