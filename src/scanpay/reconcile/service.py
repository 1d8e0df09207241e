"""One reconciliation run: download a day's bill, match it, store the report, raise alerts.

:meth:`Reconciler.run` streams the download into a temporary file, then that file through
:class:`~scanpay.wechat.bill.BillReader` into :func:`~scanpay.domain.reconciliation.match_bill`
on a worker thread (the ledger window
for the day is the only large thing held in memory), then keeps the ``missing_remote``
candidates that no other day's bill carried, held for ``hold_days`` days, and replaces the
day's report (the latest run wins; alerts only for differences the previous run of that day
had not reported). Every run also settles held differences of other days: dropped when a
bill carried them since, reported once their hold is over.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import BinaryIO

from scanpay.domain.model import utcnow
from scanpay.domain.reconciliation import (
    HOLD_DAYS,
    Difference,
    LedgerWindow,
    MatchResult,
    Report,
    classify_candidates,
    day_start,
    hold_until,
    match_bill,
    shanghai_day,
    status_of,
)
from scanpay.errors import NotFoundError, ValidationError
from scanpay.reconcile.source import BillSource
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.wechat.bill import BillReader, lines_of

log = logging.getLogger(__name__)
MAX_AGE_DAYS = 92  # WeChat serves bills of the last three months


class Reconciler:
    def __init__(
        self,
        store: ReconciliationStore,
        source: BillSource,
        *,
        clock: Callable[[], datetime] = utcnow,
        hold_days: int = HOLD_DAYS,
    ) -> None:
        self.store = store
        self.source = source
        self._clock = clock
        self.hold_days = hold_days

    def today(self) -> date:
        return shanghai_day(self._clock())

    def check_day(self, day: date) -> date:
        today = self.today()
        if day > today:
            raise ValidationError(f"{day.isoformat()} is in the future (Shanghai time)",
                                  code="INVALID_DATE")  # fmt: skip
        if day < today - timedelta(days=MAX_AGE_DAYS):
            raise ValidationError("WeChat Pay serves bills of the last three months only",
                                  code="INVALID_DATE")  # fmt: skip
        return day

    async def run(self, day: date) -> Report:
        """Reconcile ``day``; :class:`BillNotReadyError` (nothing stored) if there is no bill."""
        self.check_day(day)
        with tempfile.TemporaryFile(prefix="scanpay-bill-") as bill:
            await self.source.trade_bill(day, bill)
            window = await asyncio.to_thread(
                self.store.window,
                day_start(day - timedelta(days=1)),
                day_start(day + timedelta(days=2)),
            )
            result = await asyncio.to_thread(self._match, day, bill, window)
        del window
        today = self.today()
        keys = [(c.entry, c.number) for c in result.candidates]
        crossed = await asyncio.to_thread(self.store.crossed, keys, not_day=day)
        found = result.differences + classify_candidates(
            result.candidates, crossed, today, self.hold_days
        )
        report = Report(
            day=day,
            status=status_of(found),
            api_version=self.source.api_version,
            bill=result.bill,
            ledger=result.ledger,
            rows=result.rows,
            differences=found,
            run_at=self._clock(),
        )
        new = await asyncio.to_thread(self.store.save, report, result.crossings)
        log.info(
            "reconciled %s: %d bill rows, %d differences (%d new), %d held",
            day.isoformat(), result.rows, len(report.open), len(new), len(report.held),
        )  # fmt: skip
        await self.settle_held()
        stored = await asyncio.to_thread(self.store.report, day)
        if stored is None:  # pragma: no cover - written just above
            raise NotFoundError("report vanished")
        return stored

    def _match(self, day: date, bill: BinaryIO, window: LedgerWindow) -> MatchResult:
        bill.seek(0)
        reader = BillReader(lines_of(bill))
        return match_bill(day, reader.rows(), window, self.store, summary=lambda: reader.summary)

    async def settle_held(self) -> int:
        """Drop held differences another bill carried; report those past their hold."""
        held = await asyncio.to_thread(self.store.held)
        if not held:
            return 0
        today = self.today()
        drop: list[tuple[date, Difference]] = []
        promote: list[tuple[date, Difference]] = []
        for day, difference in held:
            key = (difference.entry, difference.number)
            crossed = await asyncio.to_thread(self.store.crossed, [key], not_day=day)
            if crossed:
                drop.append((day, difference))
            elif difference.local_day and today >= hold_until(difference.local_day, self.hold_days):
                promote.append((day, difference))
        await asyncio.to_thread(self.store.settle_held, drop, promote)
        return len(drop) + len(promote)

    async def report(self, day: date) -> Report | None:
        return await asyncio.to_thread(self.store.report, day)
