"""API v2 ``pay/downloadbill`` (PROTOCOL.md 2.8), both directions.

The request is an ordinary signed v2 request. The answer is *not* a v2 envelope: on success
it is the bill text itself (or its gzip when ``tar_type=GZIP``), unsigned; on failure it is
``<xml><return_code>FAIL</return_code><return_msg>..</return_msg><error_code>..</error_code>``,
mapped here to :class:`~scanpay.errors.ApiError`. The text is parsed by
:mod:`scanpay.wechat.bill`.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.bill import MAX_BILL_CHARS, Bill, parse_bill
from scanpay.wechat.v2.envelope import raise_for_result
from scanpay.wechat.xmlcodec import dump_xml, parse_xml

DOWNLOAD_BILL_PATH: Final = "/pay/downloadbill"
_BILL_DATE: Final = re.compile(r"[0-9]{8}")
_GZIP_MAGIC: Final = b"\x1f\x8b"


class BillType(StrEnum):
    ALL = "ALL"
    SUCCESS = "SUCCESS"
    REFUND = "REFUND"
    RECHARGE_REFUND = "RECHARGE_REFUND"


@dataclass(frozen=True)
class DownloadBill:
    """``pay/downloadbill`` for one day (``yyyyMMdd``, Beijing)."""

    bill_date: str
    bill_type: BillType = BillType.ALL
    gzip: bool = False

    def __post_init__(self) -> None:
        if not _BILL_DATE.fullmatch(self.bill_date):
            raise MalformedMessageError("bill_date must be yyyyMMdd")
        try:
            date(int(self.bill_date[:4]), int(self.bill_date[4:6]), int(self.bill_date[6:]))
        except ValueError:
            raise MalformedMessageError("bill_date is not a calendar date") from None

    @classmethod
    def for_day(
        cls, day: date, bill_type: BillType = BillType.ALL, *, gzip: bool = False
    ) -> DownloadBill:
        return cls(day.strftime("%Y%m%d"), bill_type, gzip)

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "bill_date": self.bill_date,
            "bill_type": self.bill_type.value,
        }
        if self.gzip:
            fields["tar_type"] = "GZIP"
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> DownloadBill:
        """Read a received request (the simulator's side)."""
        try:
            bill_type = BillType(fields.get("bill_type", "") or "ALL")
        except ValueError:
            raise MalformedMessageError("unknown bill_type") from None
        tar_type = fields.get("tar_type", "")
        if tar_type not in ("", "GZIP"):
            raise MalformedMessageError("tar_type must be GZIP when present")
        return cls(fields.get("bill_date", ""), bill_type, tar_type == "GZIP")


def _gunzip(body: bytes) -> bytes:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, MAX_BILL_CHARS * 4)
    except zlib.error:
        raise MalformedMessageError("bill gzip is corrupt") from None
    if decompressor.unconsumed_tail or not decompressor.eof:
        raise MalformedMessageError("bill gzip is truncated or too large")
    return data


def read_bill_bytes(body: bytes, *, http_status: int | None = None) -> bytes:
    """The bill file (UTF-8, decompressed) of a ``pay/downloadbill`` answer, or its error."""
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body)
    head = body.lstrip()[:5]
    if head == b"<xml>" or head.startswith(b"<?xml"):
        fields = parse_xml(body)
        raise_for_result(fields, http_status=http_status)
        raise MalformedMessageError("bill answer is XML but not an error")
    return body


def read_bill_response(body: bytes, *, http_status: int | None = None) -> str:
    """The bill text of a ``pay/downloadbill`` answer, or the typed error it carries."""
    body = read_bill_bytes(body, http_status=http_status)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessageError("bill is not UTF-8") from None


def parse_bill_response(body: bytes, *, http_status: int | None = None) -> Bill:
    return parse_bill(read_bill_response(body, http_status=http_status))


def encode_bill(text: str, *, compress: bool = False) -> bytes:
    """The simulator's success answer: the text, gzip-ed (deterministically) when asked."""
    data = text.encode("utf-8")
    return gzip.compress(data, mtime=0) if compress else data


def encode_bill_failure(return_msg: str, error_code: str = "") -> bytes:
    """The simulator's failure answer, e.g. ``("No Bill Exist", "20002")``."""
    fields = {"return_code": "FAIL", "return_msg": return_msg}
    if error_code:
        fields["error_code"] = error_code
    return dump_xml(fields)
