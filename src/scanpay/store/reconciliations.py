"""Reconciliation reports, their differences, cross-day matches and the daily run's lease.

Tables (Alembic revision 0011):

* ``reconciliation_reports`` — one row per Shanghai day (the latest run replaces it);
* ``reconciliation_differences`` — the day's differences, ``open`` or ``held`` (a
  ``missing_remote`` inside its hold period);
* ``reconciliation_crossings`` — ledger entries that a bill of another day than their local day
  carried (few: payments recorded just after midnight, late notifications), so the local day's
  run does not take them for ``missing_remote``;
* ``reconciliation_leases`` — one row per job name: the instance holding it runs the job.

A report, its differences, its crossings and the alerts for differences it newly reports are
written in one transaction. The ledger side is read from ``payment_attempts`` and ``refunds``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from scanpay.domain.model import EventType, utcnow
from scanpay.domain.reconciliation import (
    Crossing,
    Difference,
    DifferenceKind,
    DifferenceState,
    Entry,
    LedgerWindow,
    LocalPayment,
    LocalRefund,
    Report,
    ReportStatus,
    Totals,
    day_start,
    shanghai_day,
    status_of,
)
from scanpay.store.migrate import writer
from scanpay.store.refunds import refunds
from scanpay.store.rows import append_event
from scanpay.store.tables import UtcDateTime, events, metadata, orders, payment_attempts

reports: Final = sa.Table(
    "reconciliation_reports",
    metadata,
    sa.Column("bill_date", sa.Date, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("api_version", sa.String(4), nullable=False),
    sa.Column("bill_rows", sa.Integer, nullable=False),
    sa.Column("totals", sa.JSON, nullable=False),
    sa.Column("difference_count", sa.Integer, nullable=False),
    sa.Column("held_count", sa.Integer, nullable=False),
    sa.Column("run_at", UtcDateTime, nullable=False),
)

differences: Final = sa.Table(
    "reconciliation_differences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bill_date", sa.Date, nullable=False, index=True),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("entry", sa.String(8), nullable=False),
    sa.Column("number", sa.String(64), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("out_trade_no", sa.String(64), nullable=False),
    sa.Column("transaction_id", sa.String(64), nullable=False),
    sa.Column("out_refund_no", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(40), nullable=True),
    sa.Column("local_amount", sa.BigInteger, nullable=True),
    sa.Column("remote_amount", sa.BigInteger, nullable=True),
    sa.Column("local_status", sa.String(24), nullable=True),
    sa.Column("remote_status", sa.String(24), nullable=True),
    sa.Column("local_day", sa.Date, nullable=True),
    sa.Column("note", sa.String(128), nullable=False),
    sa.Index("ix_reconciliation_differences_state", "state"),
)

crossings: Final = sa.Table(
    "reconciliation_crossings",
    metadata,
    sa.Column("entry", sa.String(8), primary_key=True),
    sa.Column("number", sa.String(64), primary_key=True),
    sa.Column("bill_date", sa.Date, nullable=False, index=True),
    sa.Column("local_day", sa.Date, nullable=False),
)

leases: Final = sa.Table(
    "reconciliation_leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
)

CHUNK: Final = 500  # numbers per IN (...) lookup
MAX_ALERTS: Final = 100  # per run: beyond it one summary alert says how many more
ALERT_REASON: Final = "reconciliation_difference"


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _payment(row: Any) -> LocalPayment:
    return LocalPayment(
        row.out_trade_no, row.transaction_id, row.amount, row.status, row.order_id,
        shanghai_day(row.updated_at),
    )  # fmt: skip


def _refund(row: Any) -> LocalRefund:
    return LocalRefund(
        row.out_refund_no, row.out_trade_no, row.amount, row.status, row.order_id,
        shanghai_day(row.updated_at),
    )  # fmt: skip


def _day_index(
    column: sa.ColumnElement[datetime], start: datetime, end: datetime
) -> tuple[sa.ColumnElement[int], list[date]]:
    """A SQL expression numbering the Shanghai day of ``column`` within ``[start, end)``, and
    the days it numbers: the database compares with the midnights, so reading 100,000 rows
    converts no timestamps in Python."""
    days = [shanghai_day(start)]
    while day_start(days[-1] + timedelta(days=1)) < end:
        days.append(days[-1] + timedelta(days=1))
    whens = [(column < day_start(day + timedelta(days=1)), n) for n, day in enumerate(days)]
    return sa.case(*whens, else_=len(days) - 1), days


_PA: Final = payment_attempts.c
_PAYMENT_COLUMNS: Final = (
    _PA.out_trade_no, _PA.transaction_id, _PA.amount, _PA.status, _PA.order_id, _PA.updated_at
)  # fmt: skip
_R: Final = refunds.c
_REFUND_COLUMNS: Final = (
    _R.out_refund_no, _R.out_trade_no, _R.amount, _R.status, _R.order_id, _R.updated_at
)  # fmt: skip


def _difference_values(day: date, d: Difference) -> dict[str, Any]:
    return {
        "bill_date": day,
        "kind": d.kind.value,
        "entry": d.entry.value,
        "number": d.number[:64],
        "state": d.state.value,
        "out_trade_no": d.out_trade_no[:64],
        "transaction_id": d.transaction_id[:64],
        "out_refund_no": d.out_refund_no[:64],
        "order_id": d.order_id,
        "local_amount": d.local_amount,
        "remote_amount": d.remote_amount,
        "local_status": d.local_status and d.local_status[:24],
        "remote_status": d.remote_status and d.remote_status[:24],
        "local_day": d.local_day,
        "note": d.note[:128],
    }


def _difference(row: Any) -> Difference:
    return Difference(
        kind=DifferenceKind(row.kind),
        entry=Entry(row.entry),
        number=row.number,
        out_trade_no=row.out_trade_no,
        transaction_id=row.transaction_id,
        out_refund_no=row.out_refund_no,
        order_id=row.order_id,
        local_amount=row.local_amount,
        remote_amount=row.remote_amount,
        local_status=row.local_status,
        remote_status=row.remote_status,
        local_day=row.local_day,
        note=row.note,
        state=DifferenceState(row.state),
    )


def _totals(data: Mapping[str, Any]) -> Totals:
    fees = data.get("fees")
    return Totals(
        int(data["payments"]),
        int(data["payment_amount"]),
        int(data["refunds"]),
        int(data["refund_amount"]),
        None if fees is None else int(fees),
    )


class ReconciliationStore:
    """The ledger as reconciliation reads it, and where its reports go."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self._clock = clock

    # ---- the ledger side (LedgerLookup) -------------------------------------------------

    def window(self, start: datetime, end: datetime) -> LedgerWindow:
        """Successful payments and refunds recorded in ``[start, end)``, keyed by number."""
        found = LedgerWindow()
        with self.engine.connect() as conn:
            index, days = _day_index(_PA.updated_at, start, end)
            paid = sa.select(*_PAYMENT_COLUMNS[:-1], index).where(
                _PA.status.in_(("paid", "surplus")), _PA.updated_at >= start, _PA.updated_at < end
            )
            for number, transaction_id, amount, status, order_id, n in conn.execution_options(
                yield_per=2000
            ).execute(paid):
                found.payments[number] = LocalPayment(
                    number, transaction_id, amount, status, order_id, days[n]
                )
            index, days = _day_index(_R.updated_at, start, end)
            done = sa.select(*_REFUND_COLUMNS[:-1], index).where(
                _R.status == "success", _R.updated_at >= start, _R.updated_at < end
            )
            for number, out_trade_no, amount, status, order_id, n in conn.execution_options(
                yield_per=2000
            ).execute(done):
                found.refunds[number] = LocalRefund(
                    number, out_trade_no, amount, status, order_id, days[n]
                )
        return found

    def payments(self, numbers: Collection[str]) -> Mapping[str, LocalPayment]:
        out: dict[str, LocalPayment] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(numbers))):
                query = sa.select(*_PAYMENT_COLUMNS).where(_PA.out_trade_no.in_(chunk))
                out.update((r.out_trade_no, _payment(r)) for r in conn.execute(query))
        return out

    def refunds(self, numbers: Collection[str]) -> Mapping[str, LocalRefund]:
        out: dict[str, LocalRefund] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(numbers))):
                query = sa.select(*_REFUND_COLUMNS).where(_R.out_refund_no.in_(chunk))
                out.update((r.out_refund_no, _refund(r)) for r in conn.execute(query))
        return out

    def crossed(
        self, keys: Iterable[tuple[Entry, str]], *, not_day: date
    ) -> set[tuple[Entry, str]]:
        """Which of ``keys`` a bill other than ``not_day``'s carried."""
        wanted = list(keys)
        found: set[tuple[Entry, str]] = set()
        with self.engine.connect() as conn:
            for entry in Entry:
                numbers = [number for kind, number in wanted if kind is entry]
                for chunk in _chunks(numbers):
                    query = sa.select(crossings.c.number).where(
                        crossings.c.entry == entry.value,
                        crossings.c.number.in_(chunk),
                        crossings.c.bill_date != not_day,
                    )
                    found.update((entry, number) for (number,) in conn.execute(query))
        return found

    # ---- reports ------------------------------------------------------------------------

    def save(self, report: Report, crossed: Sequence[Crossing]) -> list[Difference]:
        """Replace the day's report; alert and return the open differences that are new."""
        day = report.day
        with self._writer.begin() as conn:
            before = {
                (r.kind, r.entry, r.number)
                for r in conn.execute(
                    sa.select(differences.c.kind, differences.c.entry, differences.c.number).where(
                        differences.c.bill_date == day, differences.c.state == "open"
                    )
                )
            }
            conn.execute(sa.delete(differences).where(differences.c.bill_date == day))
            conn.execute(sa.delete(crossings).where(crossings.c.bill_date == day))
            conn.execute(sa.delete(reports).where(reports.c.bill_date == day))
            conn.execute(sa.insert(reports).values(self._report_values(report)))
            if report.differences:
                conn.execute(
                    sa.insert(differences),
                    [_difference_values(day, d) for d in report.differences],
                )
            for entry in Entry:  # a number lands in one bill: the latest day to carry it wins
                numbers = [c.number for c in crossed if c.entry is entry]
                for chunk in _chunks(numbers):
                    conn.execute(
                        sa.delete(crossings).where(
                            crossings.c.entry == entry.value, crossings.c.number.in_(chunk)
                        )
                    )
            if crossed:
                conn.execute(
                    sa.insert(crossings),
                    [
                        {
                            "entry": c.entry.value,
                            "number": c.number,
                            "bill_date": day,
                            "local_day": c.local_day,
                        }
                        for c in crossed
                    ],
                )
            new = [d for d in report.open if d.key not in before]
            self._alert(conn, day, new)
        return new

    @staticmethod
    def _report_values(report: Report) -> dict[str, Any]:
        return {
            "bill_date": report.day,
            "status": report.status.value,
            "api_version": report.api_version,
            "bill_rows": report.rows,
            "totals": {"bill": report.bill.to_json(), "ledger": report.ledger.to_json()},
            "difference_count": len(report.open),
            "held_count": len(report.held),
            "run_at": report.run_at,
        }

    def _alert(self, conn: sa.Connection, day: date, found: Sequence[Difference]) -> None:
        now = self._clock()
        for difference in found[:MAX_ALERTS]:
            data = {"reason": ALERT_REASON, "bill_date": day.isoformat(), **difference.to_json()}
            known = (
                difference.order_id is not None
                and conn.execute(
                    sa.select(orders.c.id).where(orders.c.id == difference.order_id)
                ).first()
            )
            if not known or difference.order_id is None:
                self._loose_alert(conn, now, data)
            else:
                append_event(conn, now, difference.order_id, EventType.ALERT, data)
        if len(found) > MAX_ALERTS:
            self._loose_alert(
                conn,
                now,
                {"reason": ALERT_REASON, "bill_date": day.isoformat(),
                 "more": len(found) - MAX_ALERTS},
            )  # fmt: skip

    @staticmethod
    def _loose_alert(conn: sa.Connection, now: datetime, data: dict[str, Any]) -> None:
        conn.execute(
            sa.insert(events).values(
                order_id=None, seq=0, type=EventType.ALERT.value, status=None, data=data,
                created_at=now,
            )
        )  # fmt: skip

    def held(self) -> list[tuple[date, Difference]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(differences).where(differences.c.state == "held")).all()
        return [(row.bill_date, _difference(row)) for row in rows]

    def settle_held(
        self, drop: Sequence[tuple[date, Difference]], promote: Sequence[tuple[date, Difference]]
    ) -> None:
        """Held differences that another bill carried go; those past their hold are reported
        (their day's report counts them, and they are alerted)."""
        if not drop and not promote:
            return
        with self._writer.begin() as conn:
            for day, d in [*drop, *promote]:
                where = (
                    differences.c.bill_date == day,
                    differences.c.kind == d.kind.value,
                    differences.c.entry == d.entry.value,
                    differences.c.number == d.number,
                    differences.c.state == "held",
                )
                if (day, d) in drop:
                    conn.execute(sa.delete(differences).where(*where))
                else:
                    conn.execute(sa.update(differences).where(*where).values(state="open"))
            for day in {day for day, _ in [*drop, *promote]}:
                self._recount(conn, day)
            by_day: dict[date, list[Difference]] = {}
            for day, d in promote:
                by_day.setdefault(day, []).append(d)
            for day, found in by_day.items():
                self._alert(conn, day, found)

    @staticmethod
    def _recount(conn: sa.Connection, day: date) -> None:
        states = [
            s for (s,) in conn.execute(
                sa.select(differences.c.state).where(differences.c.bill_date == day)
            )
        ]  # fmt: skip
        open_count = states.count("open")
        conn.execute(
            sa.update(reports)
            .where(reports.c.bill_date == day)
            .values(
                difference_count=open_count,
                held_count=states.count("held"),
                status=(ReportStatus.DIFFERENCES if open_count else ReportStatus.MATCHED).value,
            )
        )

    def report(self, day: date) -> Report | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(reports).where(reports.c.bill_date == day)).first()
            if row is None:
                return None
            found = [
                _difference(r)
                for r in conn.execute(
                    sa.select(differences)
                    .where(differences.c.bill_date == day)
                    .order_by(differences.c.id)
                )
            ]
        totals = dict(row.totals)
        return Report(
            day=day,
            status=status_of(found),
            api_version=row.api_version,
            bill=_totals(totals["bill"]),
            ledger=_totals(totals["ledger"]),
            rows=row.bill_rows,
            differences=found,
            run_at=row.run_at,
        )

    # ---- the daily run's lease ----------------------------------------------------------

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Hold ``name`` for ``seconds`` unless another holder's lease is still running."""
        now = self._clock()
        until = now + timedelta(seconds=seconds)
        with self._writer.begin() as conn:
            taken = conn.execute(
                sa.update(leases)
                .where(
                    leases.c.name == name,
                    sa.or_(
                        leases.c.holder == holder,
                        leases.c.lease_until.is_(None),
                        leases.c.lease_until <= now,
                    ),
                )
                .values(holder=holder, lease_until=until)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first()
            if exists is not None:
                return False
        try:
            with self._writer.begin() as conn:
                conn.execute(sa.insert(leases).values(name=name, holder=holder, lease_until=until))
        except sa.exc.IntegrityError:
            return False  # another instance inserted it first
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(leases)
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(holder=None, lease_until=None)
            )

    # ---- async wrappers -----------------------------------------------------------------

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
