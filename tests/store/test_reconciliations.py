"""The reconciliation tables on SQLite and PostgreSQL: a report replaces the day's previous
one and alerts only what is new, crossings move to the latest day that carried them, held
differences are dropped or reported, and the daily lease has one holder at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from scanpay.domain.reconciliation import (
    Crossing,
    Difference,
    DifferenceKind,
    DifferenceState,
    Entry,
    Report,
    Totals,
    status_of,
)
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.store.tables import events

DAY = date(2025, 3, 1)
NOW = datetime(2025, 3, 2, 2, 30, tzinfo=UTC)


def difference(number: str, kind: DifferenceKind = DifferenceKind.AMOUNT_MISMATCH,
               state: DifferenceState = DifferenceState.OPEN) -> Difference:  # fmt: skip
    return Difference(kind, Entry.PAYMENT, number, number, "42" + number, "", None, 100, 101,
                      "paid", "SUCCESS", DAY, "", state)  # fmt: skip


def report(day: date, *found: Difference) -> Report:
    return Report(day, status_of(found), "v2", Totals(3, 300, 0, 0, 1), Totals(3, 300),
                  3, list(found), NOW)  # fmt: skip


def alerts(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.data).where(events.c.type == "alert")).all()
    return sorted(row.data["number"] for row in rows)


def test_reports_replace_and_alert_what_is_new(engine: sa.Engine) -> None:
    clock = [NOW]
    store = ReconciliationStore(engine, clock=lambda: clock[0])
    assert store.report(DAY) is None
    new = store.save(report(DAY, difference("a1"), difference("a2")), [])
    assert [d.number for d in new] == ["a1", "a2"]
    again = store.save(report(DAY, difference("a2"), difference("a3")), [])
    assert [d.number for d in again] == ["a3"]
    stored = store.report(DAY)
    assert stored is not None
    assert [d.number for d in stored.open] == ["a2", "a3"]
    assert stored.bill == Totals(3, 300, 0, 0, 1)
    assert stored.ledger == Totals(3, 300)
    assert alerts(engine) == ["a1", "a2", "a3"]


def test_crossings_and_held_differences(engine: sa.Engine) -> None:
    store = ReconciliationStore(engine, clock=lambda: NOW)
    next_day = DAY + timedelta(days=1)
    held = difference("h1", DifferenceKind.MISSING_REMOTE, DifferenceState.HELD)
    late = difference("h2", DifferenceKind.MISSING_REMOTE, DifferenceState.HELD)
    store.save(report(next_day, held, late), [])
    assert store.crossed([(Entry.PAYMENT, "h1")], not_day=next_day) == set()
    store.save(report(DAY), [Crossing(Entry.PAYMENT, "h1", next_day)])
    assert store.crossed([(Entry.PAYMENT, "h1"), (Entry.PAYMENT, "h2")], not_day=next_day) == {
        (Entry.PAYMENT, "h1")
    }
    assert store.crossed([(Entry.PAYMENT, "h1")], not_day=DAY) == set()
    store.save(report(DAY), [Crossing(Entry.PAYMENT, "h1", next_day)])  # re-run: still one
    assert [(day, d.number) for day, d in store.held()] == [(next_day, "h1"), (next_day, "h2")]
    store.settle_held([(next_day, held)], [(next_day, late)])
    assert store.held() == []
    stored = store.report(next_day)
    assert stored is not None
    assert [(d.number, d.state) for d in stored.differences] == [("h2", DifferenceState.OPEN)]
    assert alerts(engine) == ["h2"]


def test_one_lease_holder_at_a_time(engine: sa.Engine) -> None:
    clock = [NOW]
    store = ReconciliationStore(engine, clock=lambda: clock[0])
    assert store.take_lease("daily", "a", 60)
    assert store.take_lease("daily", "a", 60)  # the holder renews
    assert not store.take_lease("daily", "b", 60)
    clock[0] += timedelta(seconds=61)
    assert store.take_lease("daily", "b", 60)
    assert not store.take_lease("daily", "a", 60)
    store.release_lease("daily", "b")
    assert store.take_lease("daily", "a", 60)
