"""The record of scanpay's active queries to WeChat Pay (issue 12, "active queries and their
answers"): one :class:`QueryRecord` per query of a payment attempt, whoever asked.

Who asks (:class:`Asker`): the reconciler (its scheduled looks, and the query that settles a
refused close), the checkout page (closing an expired attempt before replacing it) and an
operator in the console ("re-query now"), and the shop API closing an order (it confirms the
close by a query). A record holds WeChat's answer (``trade_state``,
``transaction_id``) or, when the call failed, the error's code or class, and what scanpay
made of the answer (the verdict and reason the domain returned). The port
:class:`QueryRecorder` stores it; a failure to store it is logged and never fails the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Asker(StrEnum):
    RECONCILER = "reconciler"
    CHECKOUT = "checkout"
    CONSOLE = "console"
    SHOP = "shop"  # the shop API's close, confirmed by a query


@dataclass(frozen=True)
class QueryRecord:
    attempt_id: str
    order_id: str
    out_trade_no: str
    asked_at: datetime
    asker: Asker
    api_version: str
    trade_state: str | None = None  # None: no answer (``error`` says why)
    transaction_id: str | None = None
    error: str | None = None  # the error code (or class) of a failed call
    verdict: str | None = None  # what scanpay made of the answer (ReportVerdict value)
    reason: str | None = None


class QueryRecorder(Protocol):
    async def record_query(self, record: QueryRecord) -> None:
        """Store one query's record (one insert)."""
        ...
