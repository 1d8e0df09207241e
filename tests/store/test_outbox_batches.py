"""PostgreSQL's batches as the rest of scanpay sees them: an order's later event never goes
before an earlier one a worker holds in a batch without its row (whoever looks: a claim or
a publish, and whatever commits between their reads), and a delivery held that way is a
pending delivery to the events API, the console and ``/metrics``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus
from scanpay.store.crosslink_queries import CrosslinkQueries
from scanpay.store.outbox import SETTINGS_ENDPOINT, Attempt, EndpointRoom, Mine, Outcome
from tests.databases import migrated_engine
from tests.store.test_outbox import Clock, _event, _order, _outbox

pytestmark = pytest.mark.postgres
TAKE = Mine(take=(10, EndpointRoom(32)))
FULL = Mine(take=(0, EndpointRoom(32)))
# the two reads that look for an order's earlier deliveries (outbox._Earlier.read)
BATCHES_READ = "CROSS JOIN LATERAL unnest(b.event_ids, b.endpoint_ids) AS p(e, ep) WHERE"
ROWS_READ = "SELECT event_id, endpoint_id, status FROM webhook_deliveries"


@contextlib.contextmanager
def between_reads(engine: sa.Engine, act: Callable[[], Any]) -> Iterator[list[str]]:
    """Run ``act`` (a transaction of its own, committed) once, after the first and before
    the second of the two reads for an order's earlier deliveries, whichever order they
    come in; yields the reads seen, in order."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        read = "batches" if BATCHES_READ in statement else "rows" if ROWS_READ in statement else ""
        if not read or len(seen) >= 2:
            return
        seen.append(read)
        if len(seen) == 2:
            act()

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def _states(outbox: Any) -> dict[str, tuple[str, int]]:
    return {d[0]: (d[2], d[3]) for d in outbox.deliveries_sync()}


def test_a_later_event_waits_for_an_earlier_one_held_in_a_batch(tmp_path: Path) -> None:
    """A claim leaves an order's refund, written as a row by a stopping worker, while its
    payment is in another worker's batch without a row; it still leaves it when the
    payment's failed first attempt (its row pending for a retry, its batch closed) commits
    between the claim's two reads; it sends it once the payment is delivered. A publish
    does the same for a new event."""
    with migrated_engine("postgres", tmp_path, "batch_order_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
        ok = Attempt(clock.now, 200, 3, "ok", None)
        busy = Attempt(clock.now, 503, 4, "busy", None)
        paid = _order(engine, 1)
        _event(engine, paid, EventType.PAID, OrderStatus.PAID)
        held = outbox.cycle_sync("x", 60, 0, [], changed=True, mine=TAKE).batch
        assert held is not None
        [payment] = held.ready
        _event(engine, paid, EventType.REFUNDED, OrderStatus.REFUNDED)
        other = outbox.cycle_sync("z", 60, 0, [], changed=True, mine=FULL).batch
        assert other is not None
        [refund] = other.waiting
        outbox.release_sync("z", [refund], [other.id])  # "z" stops: the refund is a row
        assert _states(outbox) == {refund.public_id: ("pending", 0)}
        assert outbox.claim_sync("y", 30, 10) == []
        retry, closed = Outcome(payment, busy, clock.now + timedelta(seconds=5), False), [held.id]
        with between_reads(engine, lambda: outbox.record_many_sync("x", [retry], closed)) as r:
            assert outbox.claim_sync("y", 30, 10) == []
        assert r == ["batches", "rows"]
        assert _states(outbox) == {payment.public_id: ("pending", 1),
                                   refund.public_id: ("pending", 0)}  # fmt: skip
        clock.now += timedelta(seconds=6)
        [again] = outbox.claim_sync("y", 30, 10)
        assert again.public_id == payment.public_id
        assert outbox.claim_sync("v", 30, 10) == []  # (the payment in flight: pending)
        assert outbox.record_many_sync("y", [Outcome(again, ok, None, True)]) == [True]
        assert [d.public_id for d in outbox.claim_sync("y", 30, 10)] == [refund.public_id]

        # a publish: the new refund waits as a row when the payment's failed attempt commits
        # between its reads (taken as "ready" it would go before the payment's retry)
        second = _order(engine, 2)
        _event(engine, second, EventType.PAID, OrderStatus.PAID)
        held = outbox.cycle_sync("x", 60, 0, [], changed=True, mine=TAKE).batch
        assert held is not None
        [payment] = held.ready
        _event(engine, second, EventType.REFUNDED, OrderStatus.REFUNDED)
        retry, closed = Outcome(payment, busy, clock.now + timedelta(seconds=5), False), [held.id]
        with between_reads(engine, lambda: outbox.record_many_sync("x", [retry], closed)) as r:
            taken = outbox.cycle_sync("w", 60, 0, [], changed=True, mine=TAKE).batch
        assert r == ["batches", "rows"]
        assert taken is None  # nothing taken: the refund is a row behind the payment's
        states = _states(outbox)
        assert states[payment.public_id] == ("pending", 1)
        [refunded] = [k for k in states if k not in {payment.public_id, again.public_id,
                                                     refund.public_id}]  # fmt: skip
        assert states[refunded] == ("pending", 0)
        assert outbox.claim_sync("y", 30, 10) == []


def test_a_delivery_held_in_a_batch_is_shown_pending(tmp_path: Path) -> None:
    """Taken into a batch, before its first attempt is recorded, a delivery is pending in
    the events API, in the console's order story and in the backlog ``/metrics`` shows (due
    once its worker stopped renewing the batch); once recorded, it is shown by its row,
    once."""
    with migrated_engine("postgres", tmp_path, "batch_shown_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        queries = CrosslinkQueries(engine)
        outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
        other = outbox.create_endpoint_sync("http://paid.example/hook?t=s3cret", "whsec_y", None)
        paid = _order(engine, 1)
        _event(engine, paid, EventType.PAID, OrderStatus.PAID)
        taken = clock.now
        batch = outbox.cycle_sync("x", 60, 0, [], changed=True, mine=TAKE).batch
        assert batch is not None
        assert len(batch.ready) == 2
        public_id = batch.ready[0].public_id
        assert _states(outbox) == {}  # no row yet
        shown = outbox.event_sync(public_id)[1]
        assert sorted((d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.history)
                      for d in shown) == sorted(
            [(SETTINGS_ENDPOINT, "pending", 0, taken, ()), (other.id, "pending", 0, taken, ())]
        )  # fmt: skip
        story = queries.order_deliveries(paid)
        assert sorted((s.event_public_id, s.event_type, s.endpoint, s.status, s.attempts)
                      for s in story) == sorted([
            (public_id, "paid", f"{SETTINGS_ENDPOINT} http://shop.example/hook", "pending", ()),
            (public_id, "paid", f"{other.id} http://paid.example/hook", "pending", ()),
        ])  # fmt: skip
        backlog = queries.webhook_backlog(clock.now)
        assert (backlog.pending, backlog.due, backlog.oldest_due_seconds) == (2, 0, 0.0)
        clock.now += timedelta(seconds=90)  # the worker stopped renewing: due, waited 90 s
        backlog = queries.webhook_backlog(clock.now)
        assert (backlog.pending, backlog.due, backlog.oldest_due_seconds) == (2, 2, 90.0)
        # one recorded: shown by its row (with its attempt), the other still held
        ok = Attempt(clock.now, 200, 3, "ok", None)
        first = batch.ready[0]
        assert outbox.record_many_sync("x", [Outcome(first, ok, None, True)]) == [True]
        shown = outbox.event_sync(public_id)[1]
        assert sorted((d.endpoint_id, d.status, d.attempts) for d in shown) == sorted(
            [(first.endpoint_id, "delivered", 1), (batch.ready[1].endpoint_id, "pending", 0)]
        )
        assert sorted((s.status, len(s.attempts)) for s in queries.order_deliveries(paid)) == [
            ("delivered", 1),
            ("pending", 0),
        ]
        backlog = queries.webhook_backlog(clock.now)
        assert (backlog.pending, backlog.due) == (1, 1)
