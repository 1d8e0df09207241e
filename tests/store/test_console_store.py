"""The console's store: operators, sessions, throttling, audit, alert acknowledgements,
the order list's filters and search, and the schema revision 0009 makes (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scanpay.domain.model import EventType, OrderStatus
from scanpay.domain.operators import Action, Role
from scanpay.errors import ConflictError, NotFoundError, ValidationError
from scanpay.store.console_queries import ConsoleQueries, OrderFilter
from scanpay.store.console_tables import CONSOLE_INDEXES
from scanpay.store.operators import OperatorStore, Throttle
from scanpay.store.tables import events, metadata, orders, payment_attempts

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CONSOLE_TABLES = {"operators", "operator_sessions", "sign_in_failures", "operator_actions",
                  "alert_acks"}  # fmt: skip


def test_revision_0009_makes_exactly_the_declared_tables_and_indexes(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = {name for name, _table, _cols in CONSOLE_INDEXES}

    def concerns_console(diff: object) -> bool:
        text = repr(diff)
        return any(t in text for t in CONSOLE_TABLES) or any(i in text for i in mine)

    assert [d for d in diffs if concerns_console(d)] == []
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) >= CONSOLE_TABLES
    for name, table, _cols in CONSOLE_INDEXES:
        assert name in {ix["name"] for ix in inspector.get_indexes(table.name)}


def test_operators_sessions_and_what_disabling_does(engine: sa.Engine) -> None:
    store = OperatorStore(engine)
    ada = store.add("ada", Role.ADMIN, "$argon2id$fake-hash-1", NOW)
    assert (ada.name, ada.role, ada.disabled) == ("ada", Role.ADMIN, False)
    with pytest.raises(ConflictError):
        store.add("ada", Role.VIEWER, "$argon2id$fake-hash-2", NOW)
    with pytest.raises(ValidationError):
        store.add("no spaces please", Role.VIEWER, "h", NOW)
    assert "password_hash" not in repr(ada)
    store.start_session("t" * 64, ada.id, "csrf", "10.0.0.1", NOW, NOW + timedelta(hours=12))
    record = store.session("t" * 64)
    assert record is not None
    assert (record.operator.name, record.csrf_token) == ("ada", "csrf")
    store.touch_session("t" * 64, NOW + timedelta(minutes=5))
    touched = store.session("t" * 64)
    assert touched is not None
    assert touched.last_seen_at == NOW + timedelta(minutes=5)
    store.set_disabled("ada", True, NOW)
    assert store.session("t" * 64) is None  # disabling ends every session
    assert store.credentials("ada") == (store.get("ada"), "$argon2id$fake-hash-1")
    store.set_password("ada", "$argon2id$new", NOW)
    found = store.credentials("ada")
    assert found is not None
    assert found[1] == "$argon2id$new"
    with pytest.raises(NotFoundError):
        store.set_disabled("nobody", True, NOW)
    assert [o.name for o in store.list_operators()] == ["ada"]


def test_failed_sign_ins_lock_a_name_and_are_forgotten_later(engine: sa.Engine) -> None:
    store = OperatorStore(engine)

    def fail(name: str, at: datetime) -> Throttle:
        quarter = timedelta(minutes=15)
        return store.record_failure(name, at, lock_after=3, lock_for=quarter, forget_after=quarter)

    assert fail("Eve", NOW).failures == 1
    assert fail("eve", NOW).locked_until is None
    third = fail("EVE", NOW)
    assert (third.failures, third.locked_until) == (3, NOW + timedelta(minutes=15))
    assert store.throttle("eve").locked_until == NOW + timedelta(minutes=15)
    later = fail("eve", NOW + timedelta(hours=1))
    assert (later.failures, later.locked_until) == (1, None)
    store.clear_failures("Eve")
    assert store.throttle("eve").failures == 0


def _order(conn: sa.Connection, n: int, status: OrderStatus, amount: int, at: datetime) -> str:
    order_id = f"ord_{n:022d}"
    conn.execute(
        sa.insert(orders).values(
            id=order_id, amount=amount, currency="CNY", description=f"item {n}",
            status=status.value, last_seq=1, created_at=at, updated_at=at,
        )
    )  # fmt: skip
    conn.execute(
        sa.insert(payment_attempts).values(
            id=f"att_{n:022d}", order_id=order_id, out_trade_no=f"sp{n:020d}", api_version="v2",
            appid="wx1", mchid="1900000001", amount=amount, currency="CNY", status="active",
            transaction_id=f"42000{n:010d}" if status is OrderStatus.PAID else None,
            created_at=at, updated_at=at,
        )
    )  # fmt: skip
    return order_id


def test_order_list_filters_pages_counts_and_search(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ids = [
            _order(conn, n, OrderStatus.PAID if n % 3 == 0 else OrderStatus.PENDING,
                   100 * (n + 1), NOW + timedelta(minutes=n))
            for n in range(30)
        ]  # fmt: skip
    queries = ConsoleQueries(engine)
    first = queries.list_orders(OrderFilter(), 10, None)
    assert [r.order.id for r in first] == ids[::-1][:10]  # newest first
    last = first[-1].order
    second = queries.list_orders(OrderFilter(), 10, (last.created_at, last.id))
    assert [r.order.id for r in second] == ids[::-1][10:20]
    paid = OrderFilter(status=OrderStatus.PAID, amount_min=1000, amount_max=2500)
    assert [r.order.id for r in queries.list_orders(paid, 50, None)] == [ids[24], ids[21],
        ids[18], ids[15], ids[12], ids[9]]  # fmt: skip
    window = OrderFilter(created_from=NOW + timedelta(minutes=5),
                         created_to=NOW + timedelta(minutes=8))  # fmt: skip
    assert len(queries.list_orders(window, 50, None)) == 3
    counts = queries.count_by_status(OrderFilter(status=OrderStatus.PAID))
    assert (counts[OrderStatus.PAID], counts[OrderStatus.PENDING]) == (10, 20)
    assert queries.find(ids[4]) == (ids[4],)
    assert queries.find(f"sp{4:020d}") == (ids[4],)
    assert queries.find(f"42000{3:010d}") == (ids[3],)
    assert queries.find("nothing-like-it") == ()
    assert queries.find("x" * 65) == ()
    exported = [r.order.id for batch in queries.export(OrderFilter(), 25) for r in batch]
    assert exported == ids[::-1][:25]


def test_figures_count_sum_and_median_time_to_pay_in_the_database(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for n, wait in enumerate((10, 40, 20, 400)):
            order_id = _order(conn, n, OrderStatus.PAID, 100 * (n + 1), NOW)
            conn.execute(
                sa.insert(events).values(
                    order_id=order_id, seq=2, type=EventType.PAID.value, status="paid",
                    data={}, created_at=NOW + timedelta(seconds=wait),
                )
            )  # fmt: skip
        _order(conn, 9, OrderStatus.PENDING, 5000, NOW - timedelta(days=2))
    queries = ConsoleQueries(engine)
    day = queries.figures(NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert (day.created, day.paid, day.paid_amount) == (4, 4, 1000)
    assert day.median_seconds_to_pay == pytest.approx(30, abs=0.01)
    three = queries.figures(NOW - timedelta(hours=1), NOW + timedelta(seconds=41))
    assert three.paid == 3
    assert three.median_seconds_to_pay == pytest.approx(20, abs=0.01)
    week = queries.figures(NOW - timedelta(days=7), NOW + timedelta(days=1))
    assert (week.created, week.paid) == (5, 4)
    empty = queries.figures(NOW + timedelta(days=1), NOW + timedelta(days=2))
    assert (empty.paid, empty.median_seconds_to_pay) == (0, None)


def test_alerts_are_acknowledged_once_with_a_note(engine: sa.Engine) -> None:
    store = OperatorStore(engine)
    ada = store.add("ada", Role.ADMIN, "h", NOW)
    with engine.begin() as conn:
        _order(conn, 1, OrderStatus.PAID, 100, NOW)
        conn.execute(
            sa.insert(events).values(
                order_id=None, seq=0, type=EventType.ALERT.value, status=None,
                data={"reason": "unknown_out_trade_no", "out_trade_no": "sp1"}, created_at=NOW,
            )
        )  # fmt: skip
        alert_id = conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one()
    queries = ConsoleQueries(engine)
    assert [a.event_id for a in queries.alerts(acknowledged=False, limit=10)] == [alert_id]
    assert queries.open_alert_count() == 1
    with pytest.raises(ValidationError):
        store.acknowledge(alert_id, ada.id, "   ", NOW)
    store.acknowledge(alert_id, ada.id, "another system shares the account", NOW)
    with pytest.raises(ConflictError):
        store.acknowledge(alert_id, ada.id, "again", NOW)
    with pytest.raises(NotFoundError):
        store.acknowledge(alert_id + 1000, ada.id, "no such", NOW)
    assert queries.alerts(acknowledged=False, limit=10) == []
    assert queries.open_alert_count() == 0
    (acked,) = queries.alerts(acknowledged=True, limit=10)
    assert acked.ack is not None
    assert (acked.ack.operator_name, acked.ack.note) == ("ada", "another system shares the account")
    store.record_action(ada, "ada", Action.ACK_ALERT, "alert:1", "ok", {"n": 1}, "::1", NOW)
    (record,) = store.actions(limit=5)
    assert (record.operator_name, record.action, record.address) == ("ada", "ack_alert", "::1")
