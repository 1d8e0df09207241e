"""Where the day's trade bill comes from: the configured API version's client.

Both clients stream the file into a file the caller gives (v3 checking its SHA-1 on the way),
never holding it whole; :class:`scanpay.wechat.bill.BillReader` then reads it line by line.
WeChat's "no bill (yet)" answers become
:class:`~scanpay.domain.reconciliation.BillNotReadyError`: v2 ``No Bill Exist`` /
``Bill Creating`` (``error_code`` 20002 and friends), v3 ``NO_STATEMENT_EXIST`` and
``STATEMENT_CREATING``.
"""

from __future__ import annotations

from datetime import date
from typing import BinaryIO, Final, Protocol

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.domain.reconciliation import BillNotReadyError
from scanpay.errors import ApiError, ConfigurationError
from scanpay.wechat.v2.bills import DownloadBill

NOT_READY_CODES: Final = frozenset({"20002", "NO_STATEMENT_EXIST", "STATEMENT_CREATING"})
NOT_READY_TEXTS: Final = ("no bill exist", "bill creating", "not exist")


class BillSource(Protocol):
    api_version: str

    async def trade_bill(self, day: date, out: BinaryIO) -> None:
        """Write the ALL trade bill of ``day`` (Shanghai) into ``out``, or raise
        :class:`BillNotReadyError`."""
        ...


def _not_ready(exc: ApiError) -> bool:
    text = exc.message.lower()
    return exc.code in NOT_READY_CODES or any(t in text for t in NOT_READY_TEXTS)


class ClientBillSource:
    """Bills through the v2 or the v3 client (``api_version`` picks which)."""

    def __init__(self, api_version: str, *, v2: V2Client | None, v3: V3Client | None) -> None:
        if (api_version == "v3" and v3 is None) or (api_version == "v2" and v2 is None):
            raise ConfigurationError(f"reconciliation over API {api_version} needs its client")
        self.api_version = api_version
        self._v2 = v2
        self._v3 = v3

    async def trade_bill(self, day: date, out: BinaryIO) -> None:
        try:
            if self.api_version == "v3":
                assert self._v3 is not None
                await self._v3.trade_bill_to(day, out, gzip=True)
            else:
                assert self._v2 is not None
                await self._v2.download_bill_to(DownloadBill.for_day(day, gzip=True), out)
        except ApiError as exc:
            if _not_ready(exc):
                raise BillNotReadyError(
                    f"WeChat Pay has no bill for {day.isoformat()} yet ({exc.code})"
                ) from None
            raise
