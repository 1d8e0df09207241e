"""Group commit on PostgreSQL (issue 13): concurrent notifications share transactions on the
psycopg connection kept for them and write the rows the SQLAlchemy path writes, a failing one
fails alone, a connection the server dropped is replaced, and each payment reaches LISTEN
through migration 0010's trigger."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from scanpay.domain.machine import Trigger
from scanpay.domain.model import EventType, Order, OrderStatus, PaymentAttempt
from scanpay.domain.ports import ReceivedNotification
from scanpay.domain.service import ReportVerdict
from scanpay.store.listen import CHANNEL, conninfo
from scanpay.store.sql import SqlStore
from tests.store.test_settle import NOW, exploding_judge, judge, pair, report, settle

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("engine", ["postgres"], indirect=True),  # tests/store/conftest.py
]


@pytest.fixture
def pg_store(engine: sa.Engine) -> SqlStore:
    return SqlStore(engine)


async def test_concurrent_notifications_share_transactions_and_notify(
    pg_store: SqlStore, engine: sa.Engine
) -> None:
    store = pg_store
    try:
        pairs = [pair(n) for n in range(40)]
        for order, attempt in pairs:
            await store.create_order(order, attempt, None)
        listener = await psycopg.AsyncConnection.connect(
            conninfo(engine.url.render_as_string(False)), autocommit=True
        )
        async with listener:
            await listener.execute(f"LISTEN {CHANNEL}")
            group = store._group
            assert group is not None
            outcomes = await asyncio.gather(*(settle(store, a) for _, a in pairs + pairs))
            verdicts = [o.verdict if o else None for o in outcomes]
            assert verdicts.count(ReportVerdict.APPLIED) == 40
            assert verdicts.count(ReportVerdict.DUPLICATE) == 40
            assert group.items == 80
            assert group.batches < 80  # some transactions carried several notifications
            notes = [note.payload async for note in listener.notifies(timeout=2.0)]
            heard = [change for payload in notes for change in payload.split(",")]
            assert len(notes) <= group.batches  # a NOTIFY per transaction at most
        # one per payment: "<order id> <seq>", the seq of the paid event
        expected = set()
        for order, _ in pairs:
            events = await store.events_after(order.id, 0)
            assert [e.type for e in events].count(EventType.PAID) == 1
            paid = next(e for e in events if e.type is EventType.PAID)
            expected.add(f"{order.id} {paid.seq}")
        assert set(heard) == expected
    finally:
        store.close()


async def test_a_failing_request_fails_alone_and_a_dropped_connection_is_replaced(
    pg_store: SqlStore, engine: sa.Engine
) -> None:
    store = pg_store
    try:
        pairs = [pair(n) for n in range(6)]
        for order, attempt in pairs:
            await store.create_order(order, attempt, None)
        results = await asyncio.gather(
            *(
                settle(store, a, judged=exploding_judge) if n == 2 else settle(store, a)
                for n, (_, a) in enumerate(pairs[:5])
            ),
            return_exceptions=True,
        )
        assert isinstance(results[2], LookupError)
        statuses = [(await store.get_order(o.id)).status for o, _ in pairs[:5]]
        assert statuses == [OrderStatus.PAID] * 2 + [OrderStatus.PENDING] + [OrderStatus.PAID] * 2
        # The server ends the settle connection (a restart, a failover): the next
        # notification fails (WeChat retries it), the one after gets a new connection.
        settler = store._settler
        assert settler is not None
        pid = settler.backend_pid
        assert pid is not None
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        last = pairs[5][1]
        with pytest.raises(psycopg.OperationalError):
            await settle(store, last)
        outcome = await settle(store, last)
        assert outcome is not None
        assert outcome.verdict is ReportVerdict.APPLIED
        assert (await store.get_order(pairs[5][0].id)).status is OrderStatus.PAID
    finally:
        store.close()


async def test_psycopg_path_writes_the_rows_the_sqlalchemy_path_writes(engine: sa.Engine) -> None:
    store = SqlStore(engine, clock=lambda: NOW)
    try:
        (order_a, attempt_a), (order_b, attempt_b) = pair(1), pair(2)
        for order, attempt in ((order_a, attempt_a), (order_b, attempt_b)):
            await store.create_order(order, attempt, None)
        # a: the SQLAlchemy path (AlchemyOps), b: group commit on psycopg (PgOps)
        receipt = ReceivedNotification("v2-payment", b"<xml/>", "", "", attempt_a.out_trade_no)
        data = {"out_trade_no": attempt_a.out_trade_no, "source": "notification_v2"}
        store.settle_payment_sync(
            report(attempt_a), judge, Trigger.PAYMENT_SUCCEEDED, data, receipt
        )
        await settle(store, attempt_b)

        def rows(order: Order, attempt: PaymentAttempt) -> list[Any]:
            with engine.connect() as conn:
                found = [
                    conn.execute(sa.text(sql), {"o": order.id, "a": attempt.out_trade_no}).all()
                    for sql in (
                        "SELECT status, last_seq, updated_at FROM orders WHERE id = :o",
                        "SELECT seq, type, status, data::text, created_at FROM events"
                        " WHERE order_id = :o ORDER BY seq",
                        "SELECT status, transaction_id, updated_at, next_query_at"
                        " FROM payment_attempts WHERE out_trade_no = :a",
                        "SELECT api, received_at, body, outcome, detail"
                        " FROM notifications_received WHERE out_trade_no = :a",
                    )
                ]
            text = repr(found)
            for mine, common in (
                (attempt.out_trade_no[-24:], "NUMBER"),
                (order.id, "ORDER"),
                (f'"amount": {order.amount}', '"amount": AMOUNT'),
            ):
                text = text.replace(mine, common)
            return [text]

        assert rows(order_a, attempt_a) == rows(order_b, attempt_b)
        assert "'paid'" in rows(order_b, attempt_b)[0]
    finally:
        store.close()


async def test_single_statement_reads_open_no_transaction(
    pg_store: SqlStore, engine: sa.Engine
) -> None:
    """The reads a status stream makes after every wake-up (and the order and attempt
    look-ups) run in autocommit: no BEGIN or COMMIT round trip, so the connection is idle,
    not in a transaction, right after the statement."""
    store = pg_store
    seen: list[tuple[str, psycopg.pq.TransactionStatus]] = []

    def after(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        seen.append((statement.split()[0], driver.info.transaction_status))

    order, attempt = pair(0)
    try:
        await store.create_order(order, attempt, None)
        sa.event.listen(engine, "after_cursor_execute", after)
        try:
            assert (await store.get_order(order.id)).id == order.id
            assert (await store.current_attempt(order.id)).out_trade_no == attempt.out_trade_no
            assert await store.find_attempt(attempt.out_trade_no) is not None
            assert len(await store.events_after(order.id, 0)) >= 1
            assert await store.last_seqs([order.id, "ord_missing"]) == {order.id: 1}
        finally:
            sa.event.remove(engine, "after_cursor_execute", after)
        assert len(seen) == 5
        assert {status for _, status in seen} == {psycopg.pq.TransactionStatus.IDLE}, seen
        # the same engine's transactions are untouched: a write still runs in one
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        store.close()
