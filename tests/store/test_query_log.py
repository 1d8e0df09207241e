"""The active-query log on SQLite and PostgreSQL: revision 0013 equals the declaration; one
row per query, read back per order in the order they were asked, long values cut to the
columns, and pruned with the accepted notifications' retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scanpay.domain.query_log import Asker, QueryRecord
from scanpay.store.housekeeping import Retention, prune
from scanpay.store.query_log import SqlQueryLog, payment_queries
from scanpay.store.tables import metadata

NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


async def _thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def record(order_id: str, at: datetime, asker: Asker, **answer: Any) -> QueryRecord:
    return QueryRecord(
        attempt_id="att_" + order_id,
        order_id=order_id,
        out_trade_no="sp" + order_id.rjust(20, "0"),
        asked_at=at,
        asker=asker,
        api_version="v3",
        **answer,
    )


def test_revision_0013_makes_exactly_the_declared_table(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if "payment_queries" in repr(d)] == []
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("payment_queries")}
    assert indexes == {"ix_payment_queries_order", "ix_payment_queries_asked_at"}


def test_queries_are_stored_read_per_order_and_pruned(engine: sa.Engine) -> None:
    log = SqlQueryLog(engine, _thread)
    answered = record(
        "ord1", NOW - timedelta(minutes=5), Asker.RECONCILER,
        trade_state="NOTPAY", verdict="noted", reason="not_paid",
    )  # fmt: skip
    failed = record(
        "ord1", NOW - timedelta(minutes=1), Asker.CONSOLE, error="X" * 300
    )  # a long error is cut to its column, never refused
    paid = record(
        "ord1", NOW, Asker.CHECKOUT,
        trade_state="SUCCESS", transaction_id="4200000000000000001", verdict="applied",
        reason="pay",
    )  # fmt: skip
    old = record("ord2", NOW - timedelta(days=91), Asker.RECONCILER, trade_state="CLOSED")
    for item in (paid, old, answered):
        log.record_sync(item)
    asyncio.run(log.record_query(failed))  # the async path the domain uses

    rows = log.for_order("ord1")
    assert [r.asker for r in rows] == [Asker.RECONCILER, Asker.CONSOLE, Asker.CHECKOUT]
    assert rows[0] == answered
    assert rows[2] == paid
    assert rows[1].error == "X" * 128
    assert rows[1].trade_state is None
    assert rows[1].verdict is None
    assert rows[0].asked_at.tzinfo is not None
    assert [r.out_trade_no for r in log.for_order("ord2")] == [old.out_trade_no]
    assert log.for_order("nobody") == []
    assert [r.asker for r in log.for_order("ord1", limit=2)] == [Asker.CONSOLE, Asker.CHECKOUT]

    pruned = prune(engine, NOW, Retention(accepted_days=90))
    assert pruned.queries == 1
    assert pruned.total == 1
    assert log.for_order("ord2") == []
    assert len(log.for_order("ord1")) == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(payment_queries)).scalar() == 3
    assert prune(engine, NOW, Retention(accepted_days=90)).queries == 0
