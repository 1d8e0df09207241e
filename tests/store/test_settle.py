"""The payment notification's transaction: the sqlite3 fast path with group commit writes the
same rows as the SQLAlchemy path, batches concurrent notifications, and isolates failures."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    EventType,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentReport,
    ReportSource,
)
from scanpay.domain.ports import ReceivedNotification
from scanpay.domain.service import ReportOutcome, ReportVerdict
from scanpay.store.group_commit import GroupCommit
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.settle import sqlite_time
from scanpay.store.sql import SqlStore
from scanpay.wechat.states import TradeState

NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
TABLES = ("orders", "payment_attempts", "events", "notifications_received")


def pair(n: int) -> tuple[Order, PaymentAttempt]:
    order = Order(f"ord_{n:022d}", 100 + n, "Tea", OrderStatus.PENDING, NOW, NOW)
    attempt = PaymentAttempt(
        id=f"att_{n:022d}",
        order_id=order.id,
        out_trade_no=f"sp{n:030d}",
        api_version=ApiVersion.V2,
        appid="wx0001",
        mchid="1900000001",
        amount=order.amount,
        currency="CNY",
        status=AttemptStatus.ACTIVE,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(minutes=10),
        next_query_at=NOW + timedelta(seconds=30),
    )
    return order, attempt


def report(attempt: PaymentAttempt) -> PaymentReport:
    return PaymentReport(
        out_trade_no=attempt.out_trade_no,
        trade_state=TradeState.SUCCESS,
        amount=attempt.amount,
        currency="CNY",
        transaction_id="4200" + attempt.out_trade_no[-24:],
        appid=attempt.appid,
        mchid=attempt.mchid,
        source=ReportSource.NOTIFICATION_V2,
    )


def judge(attempt: PaymentAttempt, status: OrderStatus) -> ReportOutcome | None:
    if attempt.status is AttemptStatus.PAID:
        return ReportOutcome(ReportVerdict.DUPLICATE, "already_paid", attempt.order_id)
    if status is OrderStatus.PENDING:
        return ReportOutcome(ReportVerdict.APPLIED, "payment_succeeded", attempt.order_id)
    return None


def exploding_judge(attempt: PaymentAttempt, status: OrderStatus) -> ReportOutcome | None:
    raise LookupError(f"judge failed for {attempt.out_trade_no}")


async def settle(
    store: SqlStore, attempt: PaymentAttempt, *, judged: Any = judge, body: bytes = b"<xml/>"
) -> ReportOutcome | None:
    receipt = ReceivedNotification("v2-payment", body, "", "", attempt.out_trade_no)
    data = {"out_trade_no": attempt.out_trade_no, "source": "notification_v2"}
    return await store.settle_payment(
        report(attempt), judged, Trigger.PAYMENT_SUCCEEDED, data, receipt
    )


def make_store(folder: Path, name: str) -> SqlStore:
    engine = make_engine(f"sqlite:///{folder / name}")
    upgrade(engine)
    return SqlStore(engine, clock=lambda: NOW)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = make_store(tmp_path, "fast.sqlite3")
    yield store
    store.close()


def dump(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row as SQLite stores it (the driver's values, no SQLAlchemy type conversion)."""
    with store.engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1")]
            for table in TABLES
        }


async def test_fast_path_writes_the_rows_the_sqlalchemy_path_writes(tmp_path: Path) -> None:
    fast, general = make_store(tmp_path, "fast.sqlite3"), make_store(tmp_path, "general.sqlite3")
    try:
        pairs = [pair(n) for n in range(3)]
        for store in (fast, general):
            for order, attempt in pairs:
                await store.create_order(order, attempt, None)
        outcomes = []
        for _, attempt in (pairs[0], pairs[1], pairs[0]):  # the third is a duplicate
            outcomes.append(await settle(fast, attempt))
            receipt = ReceivedNotification("v2-payment", b"<xml/>", "", "", attempt.out_trade_no)
            data = {"out_trade_no": attempt.out_trade_no, "source": "notification_v2"}
            general_outcome = await asyncio.to_thread(
                general.settle_payment_sync,
                report(attempt), judge, Trigger.PAYMENT_SUCCEEDED, data, receipt,
            )  # fmt: skip
            assert outcomes[-1] == general_outcome
        assert [o.verdict if o else None for o in outcomes] == [
            ReportVerdict.APPLIED,
            ReportVerdict.APPLIED,
            ReportVerdict.DUPLICATE,
        ]
        assert dump(fast) == dump(general)
        # And what the fast path wrote reads back through the ordinary (SQLAlchemy) readers.
        paid = await fast.find_attempt(pairs[0][1].out_trade_no)
        assert paid is not None
        assert paid.status is AttemptStatus.PAID
        assert paid.next_query_at is None
        assert paid.updated_at == NOW
        events = await fast.events_after(pairs[0][0].id, 0)
        assert [(e.type, e.status, e.created_at) for e in events][-1] == (
            EventType.PAID,
            OrderStatus.PAID,
            NOW,
        )
        assert events[-1].data["trigger"] == "payment_succeeded"
    finally:
        fast.close()
        general.close()


def test_sqlite_time_matches_sqlalchemy_storage(tmp_path: Path) -> None:
    store = make_store(tmp_path, "t.sqlite3")
    try:
        order, _ = pair(1)
        store.create_order_sync(order, pair(1)[1], None)
        with store.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT created_at FROM orders").scalar_one()
        assert stored == sqlite_time(NOW)
        shanghai = NOW.astimezone(ZoneInfo("Asia/Shanghai"))
        assert sqlite_time(shanghai) == stored
        assert sqlite_time(NOW.replace(microsecond=0)).endswith(".000000")
    finally:
        store.close()


async def test_concurrent_notifications_share_transactions(sqlite_store: SqlStore) -> None:
    pairs = [pair(n) for n in range(60)]
    for order, attempt in pairs:
        await sqlite_store.create_order(order, attempt, None)
    group = sqlite_store._group
    assert group is not None
    before = group.batches
    # Every order twice, all at once: one payment each, the repeats duplicates.
    outcomes = await asyncio.gather(*(settle(sqlite_store, a) for _, a in pairs + pairs))
    verdicts = [o.verdict if o else None for o in outcomes]
    assert verdicts.count(ReportVerdict.APPLIED) == 60
    assert verdicts.count(ReportVerdict.DUPLICATE) == 60
    assert group.batches - before < 120  # some transactions carried several notifications
    for order, _ in pairs:
        events = await sqlite_store.events_after(order.id, 0)
        assert [e.type for e in events].count(EventType.PAID) == 1
        assert (await sqlite_store.get_order(order.id)).status is OrderStatus.PAID
    assert len(dump(sqlite_store)["notifications_received"]) == 120


async def test_a_failing_request_fails_alone(sqlite_store: SqlStore) -> None:
    pairs = [pair(n) for n in range(5)]
    for order, attempt in pairs:
        await sqlite_store.create_order(order, attempt, None)
    results = await asyncio.gather(
        *(
            settle(sqlite_store, a, judged=exploding_judge if n == 2 else judge)
            for n, (_, a) in enumerate(pairs)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[2], LookupError)
    for n, (order, _) in enumerate(pairs):
        status = (await sqlite_store.get_order(order.id)).status
        assert status is (OrderStatus.PENDING if n == 2 else OrderStatus.PAID)
    # The failed one left nothing behind: no event, no receipt, attempt unchanged.
    failed = await sqlite_store.find_attempt(pairs[2][1].out_trade_no)
    assert failed == pairs[2][1]
    received = dump(sqlite_store)["notifications_received"]
    assert pairs[2][1].out_trade_no not in {row[2] for row in received}
    assert len(received) == 4


async def test_a_database_error_rolls_back_and_the_store_stays_usable(
    sqlite_store: SqlStore,
) -> None:
    order, attempt = pair(1)
    await sqlite_store.create_order(order, attempt, None)
    with sqlite_store.engine.begin() as conn:  # a trigger makes the receipt insert fail
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON notifications_received "
            "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="refused by test"):
        await settle(sqlite_store, attempt)
    assert (await sqlite_store.get_order(order.id)).status is OrderStatus.PENDING
    assert [e.type for e in await sqlite_store.events_after(order.id, 0)] == [EventType.CREATED]
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse")
    outcome = await settle(sqlite_store, attempt)
    assert outcome is not None
    assert outcome.verdict is ReportVerdict.APPLIED


async def test_unknown_attempt_writes_nothing(sqlite_store: SqlStore) -> None:
    _, stranger = pair(99)
    assert await settle(sqlite_store, stranger) is None
    assert all(rows == [] for rows in dump(sqlite_store).values())


# ---- GroupCommit on its own ------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(1)
    yield executor
    executor.shutdown(wait=True)


async def test_group_commit_batches_and_keeps_order(one_thread: ThreadPoolExecutor) -> None:
    seen: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int | BaseException]:
        seen.append(list(items))
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(one_thread, run, max_batch=8)
    results = await asyncio.gather(*(group.submit(n) for n in range(30)))
    assert results == [n * 10 for n in range(30)]
    assert [n for batch in seen for n in batch] == list(range(30))
    assert max(len(batch) for batch in seen) <= 8
    assert len(seen) < 30
    assert (group.batches, group.items) == (len(seen), 30)


async def test_group_commit_hands_out_errors(one_thread: ThreadPoolExecutor) -> None:
    def run(items: Sequence[int]) -> list[int | BaseException]:
        if 13 in items:
            raise OSError("disk on fire")
        return [ValueError(str(i)) if i % 2 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(one_thread, run)
    assert await group.submit(4) == 4
    with pytest.raises(ValueError, match="3"):
        await group.submit(3)
    with pytest.raises(OSError, match="disk on fire"):
        await group.submit(13)

    def wrong(items: Sequence[int]) -> list[int | BaseException]:
        return []

    broken: GroupCommit[int, int] = GroupCommit(one_thread, wrong)
    with pytest.raises(RuntimeError, match="wrong number"):
        await broken.submit(1)
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(one_thread, run, max_batch=0)


async def test_gathering_waits_for_the_recent_peak_only(one_thread: ThreadPoolExecutor) -> None:
    """With gathering, a batch waits until as many items as were recently outstanding are
    queued (here the second batch for its fourth item, without reaching its bound), and a
    lone item does not wait at all (the bound is far beyond the test's time limit)."""
    seen: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()

    def run(items: Sequence[str]) -> list[str | BaseException]:
        seen.append(list(items))
        if items[0] == "a":
            started.set()
            gate.wait(30)
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(one_thread, run, gather_seconds=600)
    first = asyncio.ensure_future(group.submit("a"))
    # "a" runs alone (nothing was outstanding before it) and is held there
    assert await asyncio.to_thread(started.wait, 30)
    queued = [asyncio.ensure_future(group.submit(item)) for item in "bcd"]
    await asyncio.sleep(0.05)
    gate.set()  # four were outstanding at once: the next batch waits for a fourth item
    assert await first == "A"
    late = asyncio.ensure_future(group.submit("e"))
    async with asyncio.timeout(60):
        assert await asyncio.gather(*queued, late) == ["B", "C", "D", "E"]
    assert seen == [["a"], ["b", "c", "d", "e"]]

    alone: GroupCommit[str, str] = GroupCommit(one_thread, run, gather_seconds=600)
    async with asyncio.timeout(60):
        assert await alone.submit("x") == "X"
    with pytest.raises(ValueError, match="gather_seconds"):
        GroupCommit(one_thread, run, gather_seconds=-1)
