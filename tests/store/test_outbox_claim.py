"""The claim in two steps (due rows, then their orders' first pending events): rows waiting
for an earlier event of their order never crowd out a delivery that may go, however many
come first (SQLite and PostgreSQL); on PostgreSQL the pick and the record read what they
take, not the backlog."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus
from scanpay.store.outbox import (
    _CLAIM_PICK,
    _NO_NESTED_LOOP,
    _PG_RECORD,
    SETTINGS_ENDPOINT,
    Attempt,
    EndpointRoom,
    Mine,
    Outcome,
)
from tests.databases import migrated_engine
from tests.store.test_outbox import Clock, _event, _order, _outbox

WAITING = 12


def test_many_waiting_deliveries_do_not_crowd_out_one_that_may_go(engine: sa.Engine) -> None:
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    stuck = [_order(engine, n) for n in range(WAITING)]
    for order_id in stuck:
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()
    failed = Attempt(clock.now, 500, 3, "no", None)
    for due in outbox.claim_sync("w", 30, 100):  # every payment fails: retried in an hour
        assert outbox.record_sync(due, "w", failed, clock.now + timedelta(hours=1),
                                  delivered=False)  # fmt: skip
    for order_id in stuck:  # each order's refund, due now, waits behind its payment
        _event(engine, order_id, EventType.REFUNDED, OrderStatus.REFUNDED)
    free = _order(engine, WAITING)
    _event(engine, free, EventType.PAID, OrderStatus.PAID)  # due now too, listed last
    outbox.publish_sync()
    # 2 at a time: the first rows looked at are all waiting refunds, yet the free one goes
    ready = outbox.claim_sync("w", 30, 2)
    assert [(json.loads(d.body)["type"], json.loads(d.body)["data"]["id"]) for d in ready] == [
        ("order.paid", free)
    ]
    assert outbox.claim_sync("w", 30, 100) == []  # the refunds still wait


def test_an_endpoint_at_its_limit_is_left_out_and_the_others_trimmed(engine: sa.Engine) -> None:
    """EndpointRoom: an endpoint with ``limit`` deliveries in flight gets none, even when its
    rows come first in the due order; another gets at most its room."""
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    slow = SETTINGS_ENDPOINT
    paid = [_order(engine, n) for n in range(6)]
    for order_id in paid[:3]:  # the slow endpoint's rows come first in the due order
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()
    other = outbox.create_endpoint_sync("http://other.example/hook", "whsec_y", None).id
    clock.now += timedelta(seconds=1)
    for order_id in paid[3:]:
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()  # the slow endpoint has 6 rows (3 due a second earlier), the other 3
    full = EndpointRoom(2, {slow: 2})
    got = outbox.claim_sync("w", 30, 2, full)
    assert [d.endpoint_id for d in got] == [other, other]
    room = EndpointRoom(2, {other: 1})  # one more to the other; the slow one's first two
    got = outbox.claim_sync("w", 30, 10, room)
    assert sorted(d.endpoint_id for d in got) == sorted([other, slow, slow])
    assert [d.endpoint_id for d in outbox.claim_sync("w", 30, 10)] == [slow] * 4  # no limit


def _rows_read(conn: sa.Connection, statement: sa.TextClause, params: dict[str, Any]) -> int:
    """Rows of ``webhook_deliveries`` that ``statement`` reads (kept or filtered out), from
    PostgreSQL's own count (``EXPLAIN ANALYZE``: the statement runs)."""
    found = conn.execute(sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.text}"), params)
    plan = found.scalar_one()[0]["Plan"]
    read, nodes = 0, [plan]
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        scan = node["Node Type"].endswith("Scan")  # (not the Update node over them)
        if scan and node.get("Relation Name") == "webhook_deliveries":
            kept = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            read += kept * node["Actual Loops"]
    return read


@pytest.mark.postgres
def test_a_postgres_claim_reads_what_it_takes_not_the_backlog(tmp_path: Path) -> None:
    """8 endpoints, 3,200 deliveries due at once, 64 of them leased: the pick reads at most
    its limit per endpoint (and the in-flight rows it steps over), and the record reads the
    rows it moves; neither reads the backlog (before revision 0014 the pick read and sorted
    every due row); a pick that its endpoints' room keeps short is not read again wider.
    The statements run as the store runs them (custom plans)."""
    with migrated_engine("postgres", tmp_path, "claim_reads_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        for n in range(8):
            outbox.create_endpoint_sync(f"http://shop{n}.example/hook", "whsec_x", None)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO events (seq, type, data, created_at, position, public_id, body)"
                " SELECT 1, 'paid', '{}', now(), g, 'evt_backlog' || g, '{}'"
                " FROM generate_series(1, 400) AS g"
            )
            conn.exec_driver_sql(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, status,"
                " attempts, next_attempt_at, created_at, updated_at) SELECT e.id, w.id,"
                " 'ord_' || e.id, 'pending', 0, now() - interval '1 minute', now(), now()"
                " FROM events AS e CROSS JOIN webhook_endpoints AS w"
            )
            conn.exec_driver_sql("ANALYZE webhook_deliveries")
        clock.now = datetime.now(UTC)
        taken = outbox.claim_sync("w", 30, 64, EndpointRoom(32, {}))
        assert len(taken) == 64
        assert len({d.endpoint_id for d in taken}) == 8  # spread over the endpoints
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            pick = {"now": clock.now, "full": [], "each": 32}
            picked = _rows_read(conn, _CLAIM_PICK, pick)
            assert 8 * 32 <= picked <= 8 * 32 + 64  # (+ the 64 in flight, stepped over)
            conn.execute(_NO_NESTED_LOOP)
            ids = [d.delivery_id for d in taken]
            record = {"ids": ids, "st": ["delivered"] * 64, "nxt": [None] * 64,
                      "last": [200] * 64, "at": [clock.now] * 64, "code": [200] * 64,
                      "ms": [3] * 64, "resp": ["ok"] * 64, "err": [None] * 64,
                      "worker": "w"}  # fmt: skip
            assert _rows_read(conn, _PG_RECORD, record) == 64
            conn.rollback()
        # every endpoint with room for 2 more: 16 leased, in one pick (a pick kept short by
        # the room alone is not read again wider: that would only read the backlog)
        picks: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", lambda *a: picks.append(a[2]))
        busy = EndpointRoom(32, dict.fromkeys({d.endpoint_id for d in taken}, 30))
        assert len(outbox.claim_sync("w", 30, 64, busy)) == 16
        assert len([sql for sql in picks if "CROSS JOIN LATERAL" in sql]) == 1


@pytest.mark.postgres
def test_a_postgres_publish_is_one_statement_per_table(tmp_path: Path) -> None:
    """A pass's positions and its deliveries go to PostgreSQL as one statement each over
    arrays (an executemany ran one statement per row: 16,000 inserts for 2,000 payments to
    8 endpoints), with the same outcome: every row published once, in order, each wanted
    delivery created pending and due now."""
    with migrated_engine("postgres", tmp_path, "publish_rows_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
        outbox.create_endpoint_sync("http://paid.example/hook", "whsec_y", ["order.paid"])
        paid = [_order(engine, n) for n in range(1, 6)]
        for order_id in paid:
            _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
        _event(engine, paid[0], EventType.REFUNDED, OrderStatus.REFUNDED)
        runs: list[tuple[str, bool]] = []  # (statement, as an executemany)
        sa.event.listen(engine, "before_cursor_execute", lambda *a: runs.append((a[2], a[5])))
        assert outbox.publish_sync() == 11  # 5 created (internal), 5 paid, 1 refunded
        writes = [(sql.split(" (")[0].split(" AS ")[0], many) for sql, many in runs
                  if sql.startswith(("INSERT", "UPDATE"))]  # fmt: skip
        assert writes == [("UPDATE events", False), ("INSERT INTO webhook_deliveries", False)]
        listed = outbox.list_events_sync(0, None, 20)
        assert [(e.type.value, e.order_id) for e in listed] == [
            *[("order.paid", o) for o in paid], ("order.refunded", paid[0])
        ]  # fmt: skip
        with engine.connect() as conn:
            positions = (
                conn.execute(sa.text("SELECT position FROM events ORDER BY id")).scalars().all()
            )
            assert positions == list(range(1, 12))  # every row, in order, once
            rows = conn.execute(sa.text(
                "SELECT e.public_id, d.endpoint_id, d.order_key, d.status, d.attempts,"
                " d.next_attempt_at FROM webhook_deliveries AS d JOIN events AS e"
                " ON e.id = d.event_id ORDER BY d.id"
            )).all()  # fmt: skip
        wanted = {(e.id, SETTINGS_ENDPOINT, e.order_id) for e in listed}
        wanted |= {(e.id, "paid", e.order_id) for e in listed if e.type.value == "order.paid"}
        got = {(r.public_id, "paid" if r.endpoint_id != SETTINGS_ENDPOINT else r.endpoint_id,
                r.order_key) for r in rows}  # fmt: skip
        assert got == wanted
        assert len(rows) == len(wanted) == 11
        assert {(r.status, r.attempts, r.next_attempt_at) for r in rows} == {
            ("pending", 0, clock.now)
        }
        assert outbox.publish_sync() == 0


def _what(dues: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((json.loads(d.body)["data"]["id"], json.loads(d.body)["type"], d.endpoint_id)
                  for d in dues)  # fmt: skip


@pytest.mark.postgres
def test_a_postgres_pass_takes_new_deliveries_into_a_batch(tmp_path: Path) -> None:
    """A worker's pass on PostgreSQL takes the new deliveries it has room for into one batch
    row rather than a row each: their rows are written when their first attempts are
    recorded. An order's later event waits for its earlier one: as a row behind a pending
    row, in the worker's hands behind one still in a batch. Older due rows go first; the
    Due handed out is the one a claim gives (body, URL, secrets)."""
    with migrated_engine("postgres", tmp_path, "batches_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
        other = outbox.create_endpoint_sync("http://paid.example/hook", "whsec_y", None).id
        outbox.rotate_secret_sync(other, "whsec_z", timedelta(hours=1))
        paid = [_order(engine, n) for n in range(1, 5)]
        _event(engine, paid[0], EventType.PAID, OrderStatus.PAID)
        outbox.publish_sync()  # paid[0]'s payment: pending rows (due), for both endpoints
        for order_id in paid[1:3]:
            _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
        _event(engine, paid[0], EventType.REFUNDED, OrderStatus.REFUNDED)  # behind a row
        _event(engine, paid[1], EventType.REFUNDED, OrderStatus.REFUNDED)  # behind the batch
        room = EndpointRoom(3, {other: 1})
        mine = Mine(take=(10, room))
        cycle = outbox.cycle_sync("w", 60, 10, [], changed=True, room=room, mine=mine)
        assert _what(cycle.claimed) == sorted([(paid[0], "order.paid", SETTINGS_ENDPOINT),
                                               (paid[0], "order.paid", other)])  # fmt: skip
        assert cycle.batch is not None
        ready, waiting = cycle.batch.ready, cycle.batch.waiting
        assert _what(ready) == sorted([
            (paid[1], "order.paid", SETTINGS_ENDPOINT), (paid[2], "order.paid", SETTINGS_ENDPOINT),
            (paid[1], "order.paid", other),  # the other's room: 3, 1 busy, 1 just claimed
        ])  # fmt: skip
        assert _what(waiting) == sorted([(paid[1], "order.refunded", SETTINGS_ENDPOINT),
                                         (paid[1], "order.refunded", other)])  # fmt: skip
        listed = {e.id: e for e in outbox.list_events_sync(0, None, 20)}
        for due in ready:
            assert (due.delivery_id, due.attempts, due.batch) == (0, 0, cycle.batch.id)
            assert due.body.decode() == listed[due.public_id].body
            assert due.order_key == paid[1] or due.order_key == paid[2]
            if due.endpoint_id == other:
                assert due.url == "http://paid.example/hook"
                assert due.secrets == ("whsec_z", "whsec_y")  # rotating: both sign
            else:
                assert due.secrets == ("whsec_x",)
        # rows only for what is not in the batch: paid[0]'s (claimed), paid[2]'s to the
        # other endpoint (no room), paid[0]'s refund (behind its payment's pending row)
        state = {(d[0], d[1]): d[2:] for d in outbox.deliveries_sync()}
        assert len(state) == 5
        assert all(s == ("pending", 0) for s in state.values())
        with engine.connect() as conn:
            [batch] = conn.execute(sa.text("SELECT * FROM webhook_batches")).all()
        assert batch.worker == "w"
        assert batch.lease_until == clock.now + timedelta(seconds=60)
        assert len(batch.event_ids) == len(batch.endpoint_ids) == 5
        # another worker takes what is due and free: paid[2]'s to the other endpoint
        assert _what(outbox.claim_sync("v", 30, 20)) == [(paid[2], "order.paid", other)]
        # the batch's first attempts: a row each, as the attempt left it, with the attempt
        ok = Attempt(clock.now, 200, 3, "ok", None)
        busy = Attempt(clock.now, 503, 4, "busy", None)
        later = clock.now + timedelta(minutes=5)
        outcomes = [Outcome(d, busy, later, False) if d.endpoint_id == other
                    else Outcome(d, ok, None, True) for d in ready]  # fmt: skip
        assert outbox.record_many_sync("w", outcomes) == [True] * 3
        state = {(d[0], d[1]): d[2:] for d in outbox.deliveries_sync()}
        assert len(state) == 8
        for due in ready:
            delivered = due.endpoint_id != other
            assert state[(due.public_id, due.endpoint_id)] == (
                ("delivered" if delivered else "pending"),
                1,
            )
            [delivery] = [d for d in outbox.event_sync(due.public_id)[1]
                          if d.endpoint_id == due.endpoint_id]  # fmt: skip
            assert [a.status_code for a in delivery.history] == [200 if delivered else 503]
            assert delivery.next_attempt_at == (None if delivered else later)
        # the waiting refunds: to the settings endpoint it may go (its payment delivered); to
        # the other it waits as a row behind its payment's retry
        mine = Mine(batches=(cycle.batch.id,), waiting=tuple(waiting))
        turn = outbox.cycle_sync("w", 60, 10, [], room=room, mine=mine)
        assert turn.held is not None
        assert _what(turn.held.ready) == [(paid[1], "order.refunded", SETTINGS_ENDPOINT)]
        assert _what(turn.held.rowed) == [(paid[1], "order.refunded", other)]
        assert turn.held.waiting == []
        state = {(d[0], d[1]): d[2:] for d in outbox.deliveries_sync()}
        assert state[(turn.held.rowed[0].public_id, other)] == ("pending", 0)
        # the batch's last one recorded: every pair has its row, the batch closes with it
        last = [Outcome(turn.held.ready[0], ok, None, True)]
        assert outbox.record_many_sync("w", last, close=[cycle.batch.id]) == [True]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar() == 0


@pytest.mark.postgres
def test_a_postgres_batch_whose_worker_died_becomes_rows(tmp_path: Path) -> None:
    """A batch whose lease runs out (its worker killed) is written out by the next pass of
    any worker as pending rows for the pairs still without one, and those are claimed; the
    dead worker's late record keeps its attempt and does not take the row over. A worker
    that stops hands over what it holds (rows) and closes what is done."""
    with migrated_engine("postgres", tmp_path, "batch_expiry_") as engine:
        clock = Clock()
        outbox = _outbox(engine, clock)
        outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
        paid = [_order(engine, n) for n in range(1, 4)]
        for order_id in paid:
            _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
        mine = Mine(take=(10, EndpointRoom(32)))
        cycle = outbox.cycle_sync("w", 60, 10, [], changed=True, mine=mine)
        assert cycle.batch is not None
        first, second, third = cycle.batch.ready
        ok = Attempt(clock.now, 200, 3, "ok", None)
        assert outbox.record_many_sync("w", [Outcome(first, ok, None, True)]) == [True]
        # a pass closes what the worker says is settled (here: another of its batches)
        _event(engine, paid[0], EventType.REFUNDED, OrderStatus.REFUNDED)
        other = outbox.cycle_sync("w", 60, 10, [], changed=True, mine=mine).batch
        assert other is not None
        assert outbox.record_many_sync("w", [Outcome(other.ready[0], ok, None, True)]) == [True]
        outbox.cycle_sync("w", 60, 0, [], mine=Mine(batches=(cycle.batch.id,), close=(other.id,)))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM webhook_batches")).scalars().all() == [
                cycle.batch.id
            ]
        # renewed while held: not expired at 59 s after the renewal
        clock.now += timedelta(seconds=30)
        outbox.cycle_sync("w", 60, 10, [], mine=Mine(batches=(cycle.batch.id,)))
        clock.now += timedelta(seconds=59)
        assert outbox.cycle_sync("u", 60, 10).claimed == []
        # "w" dies; once its lease has run out, "u" writes and claims the two left
        clock.now += timedelta(seconds=2)
        again = outbox.cycle_sync("u", 60, 10)
        assert sorted(d.public_id for d in again.claimed) == sorted(
            [second.public_id, third.public_id]
        )
        assert all(d.batch is None and d.delivery_id > 0 for d in again.claimed)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar() == 0
        # "w"'s late record: the attempt is kept, the row stays "u"'s
        assert outbox.record_many_sync("w", [Outcome(second, ok, None, True)]) == [False]
        ours = {first.public_id, second.public_id, third.public_id}
        state = {d[0]: d[2:] for d in outbox.deliveries_sync() if d[0] in ours}
        assert state == {first.public_id: ("delivered", 1), second.public_id: ("pending", 0),
                         third.public_id: ("pending", 0)}  # fmt: skip
        [delivery] = outbox.event_sync(second.public_id)[1]
        assert [a.status_code for a in delivery.history] == [200]
        # a stopping worker: its waiting deliveries become rows, its done batches close
        fourth = _order(engine, 4)
        _event(engine, fourth, EventType.PAID, OrderStatus.PAID)
        _event(engine, fourth, EventType.REFUNDED, OrderStatus.REFUNDED)
        nxt = outbox.cycle_sync(
            "x", 60, 0, [], changed=True, mine=Mine(take=(10, EndpointRoom(32)))
        )
        assert nxt.batch is not None
        [payment], [refund] = nxt.batch.ready, nxt.batch.waiting
        assert outbox.record_many_sync("x", [Outcome(payment, ok, None, True)]) == [True]
        outbox.release_sync("x", [refund], [nxt.batch.id])
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar() == 0
        assert [d.public_id for d in outbox.claim_sync("y", 30, 10)] == [refund.public_id]
        # a full worker takes nothing new, but an order's later event whose earlier one is in
        # a batch waits in its hands, not as a row that a claim could send first
        fifth = _order(engine, 5)
        _event(engine, fifth, EventType.PAID, OrderStatus.PAID)
        held = outbox.cycle_sync(
            "x", 60, 0, [], changed=True, mine=Mine(take=(10, EndpointRoom(32)))
        ).batch
        assert held is not None
        _event(engine, fifth, EventType.REFUNDED, OrderStatus.REFUNDED)
        full = Mine(take=(0, EndpointRoom(32)))
        later = outbox.cycle_sync("z", 60, 0, [], changed=True, mine=full).batch
        assert later is not None
        assert later.ready == []
        assert [json.loads(d.body)["type"] for d in later.waiting] == ["order.refunded"]
        assert later.waiting[0].public_id not in {d[0] for d in outbox.deliveries_sync()}
