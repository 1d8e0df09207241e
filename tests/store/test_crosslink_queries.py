"""The console's and /metrics' reads of the webhook and reconciliation tables, on SQLite and
PostgreSQL: an order's deliveries with their attempts, disabled endpoints, the webhook
backlog, and the reconciled days with their difference counts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from scanpay.domain.reconciliation import (
    Difference,
    DifferenceKind,
    DifferenceState,
    Entry,
    Report,
    ReportStatus,
    Totals,
)
from scanpay.store.crosslink_queries import CrosslinkQueries, endpoint_label
from scanpay.store.outbox import Attempt, OutboxStore
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.store.sql import SqlStore
from scanpay.webhooks.signing import generate_secret
from tests.store.test_settle import NOW, pair


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def _unused(*_args: Any) -> Any:
    raise AssertionError("the sync methods are called directly here")


def test_webhook_reads(engine: sa.Engine, store: SqlStore) -> None:
    clock = Clock()
    outbox = OutboxStore(engine, _unused, clock)
    queries = CrosslinkQueries(engine)
    order, attempt = pair(1)
    other, other_attempt = pair(2)
    store.create_order_sync(order, attempt, None)
    store.create_order_sync(other, other_attempt, None)
    store.record_alert_sync(order.id, "amount_mismatch", {"expected": 101, "received": 1})
    store.record_alert_sync(other.id, "amount_mismatch", {"expected": 102, "received": 2})
    kept = outbox.create_endpoint_sync("https://u:pw@shop.example/hook?token=s3cret", "x", None)
    gone = outbox.create_endpoint_sync("https://gone.example/hook", generate_secret(), None)

    before = queries.webhook_backlog(clock.now)
    assert before.unpublished >= 4  # two orders created, two alerts
    assert (before.pending, before.due) == (0, 0)
    while outbox.publish_sync():
        pass
    published = queries.webhook_backlog(clock.now)
    assert (published.unpublished, published.pending, published.due) == (0, 4, 4)
    assert published.oldest_due_seconds == 0.0
    clock.now += timedelta(seconds=7)
    assert queries.webhook_backlog(clock.now).oldest_due_seconds == 7.0

    claimed = outbox.claim_sync("w1", 60, 10)
    assert len(claimed) == 4
    mine = [d for d in claimed if d.event_id == min(c.event_id for c in claimed)]
    for due in claimed:
        if due not in mine:
            continue
        if due.endpoint_id == kept.id:
            refused = Attempt(clock.now, 503, 12, "busy", None)
            outbox.record_sync(
                due, "w1", refused, clock.now + timedelta(seconds=5), delivered=False
            )
        else:
            answer = Attempt(clock.now, 410, 3, "gone", None)
            outbox.record_sync(due, "w1", answer, None, delivered=False, disable="410 Gone")
    # the other order's deliveries are leased, not due; this order's retry is 5 s away
    backlog = queries.webhook_backlog(clock.now)
    assert (backlog.pending, backlog.due) == (3, 0)
    clock.now += timedelta(seconds=6)
    assert queries.webhook_backlog(clock.now).due == 1

    found = queries.order_deliveries(order.id)
    assert {d.endpoint.split()[0] for d in found} == {kept.id, gone.id}
    by_endpoint = {d.endpoint.split()[0]: d for d in found}
    retried = by_endpoint[kept.id]
    assert retried.status == "pending"
    assert [(a.status_code, a.latency_ms) for a in retried.attempts] == [(503, 12)]
    assert retried.next_attempt_at == NOW + timedelta(seconds=12)
    assert retried.endpoint == f"{kept.id} https://shop.example/hook"  # no user info, no query
    assert by_endpoint[gone.id].status == "failed"
    assert {d.event_public_id for d in found} == set(queries.order_event_ids(order.id))
    assert not set(queries.order_event_ids(order.id)) & set(queries.order_event_ids(other.id))
    [disabled] = queries.disabled_endpoints()
    assert (disabled.endpoint.split()[0], disabled.reason) == (gone.id, "410 Gone")
    outbox.delete_endpoint_sync(kept.id)  # deleted by the shop: not an alert
    assert [d.endpoint.split()[0] for d in queries.disabled_endpoints()] == [gone.id]


def test_endpoint_label_keeps_only_where_it_points() -> None:
    assert endpoint_label("we_1", "http://[::1]:8080/a?b=c#d") == "we_1 http://[::1]:8080/a"
    assert endpoint_label("we_2", "https://x:y@h.example/p") == "we_2 https://h.example/p"


def test_reconciled_days(engine: sa.Engine) -> None:
    store = ReconciliationStore(engine)
    queries = CrosslinkQueries(engine)
    assert queries.reconciled_days(10) == []
    run_at = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)

    def diff(kind: DifferenceKind, number: str, state: DifferenceState) -> Difference:
        return Difference(kind, Entry.PAYMENT, number, out_trade_no=number, state=state)

    days = {
        date(2025, 3, 1): [],
        date(2025, 3, 2): [
            diff(DifferenceKind.MISSING_LOCAL, "a", DifferenceState.OPEN),
            diff(DifferenceKind.MISSING_LOCAL, "b", DifferenceState.OPEN),
            diff(DifferenceKind.STATUS_MISMATCH, "c", DifferenceState.OPEN),
            diff(DifferenceKind.MISSING_REMOTE, "d", DifferenceState.HELD),
        ],
        date(2025, 3, 3): [diff(DifferenceKind.AMOUNT_MISMATCH, "e", DifferenceState.OPEN)],
    }
    for day, found in days.items():
        status = ReportStatus.DIFFERENCES if found else ReportStatus.MATCHED
        store.save(Report(day, status, "v3", Totals(), Totals(), 5, found, run_at), [])
    listed = queries.reconciled_days(10)
    assert [d.day for d in listed] == [date(2025, 3, 3), date(2025, 3, 2), date(2025, 3, 1)]
    second = listed[1]
    assert (second.status, second.open_count, second.held_count) == ("differences", 3, 1)
    assert second.counts == {"missing_local": 2, "status_mismatch": 1}
    assert (listed[2].status, listed[2].counts) == ("matched", {})
    assert [d.day for d in queries.reconciled_days(1, date(2025, 3, 3))] == [date(2025, 3, 2)]
