"""The active queries of an order's payment attempts in the console's timeline (issue 12,
"active queries and their answers"): who asked (reconciler, checkout, console), the API
version, WeChat's ``trade_state`` (or the error of a failed call), its ``transaction_id``,
and the verdict scanpay reached. Rows come from :mod:`scanpay.store.query_log`; plugged in
through the console's ``timeline_sources`` (:mod:`.state`)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from scanpay.domain.query_log import QueryRecord
from scanpay.domain.service import PaymentService
from scanpay.store.query_log import SqlQueryLog
from scanpay.web.console.state import ConsoleState, TimelineEntry, TimelineSource


def query_entry(record: QueryRecord) -> TimelineEntry:
    """One query as a timeline line (title: the attempt's ``out_trade_no``)."""
    detail = {
        "asked_by": record.asker.value,
        "api": record.api_version,
        "trade_state": record.trade_state or "",
        "transaction_id": record.transaction_id or "",
        "error": record.error or "",
        "verdict": record.verdict or ("query_failed" if record.error else ""),
        "reason": record.reason or "",
    }
    return TimelineEntry(record.asked_at, "wechat_query", record.out_trade_no, detail)


def timeline_source(log: SqlQueryLog) -> TimelineSource:
    async def queries(order_id: str) -> list[TimelineEntry]:
        found = await asyncio.to_thread(log.for_order, order_id)
        return [query_entry(record) for record in found]

    return queries


def install(app: FastAPI, service: PaymentService, log: SqlQueryLog) -> None:
    """Record every active query of ``service`` in ``log``; show them in the console (when
    it is enabled)."""
    service.query_log = log
    console: ConsoleState | None = getattr(app.state, "console", None)
    if console is not None:
        console.timeline_sources.append(timeline_source(log))
