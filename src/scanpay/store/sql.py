"""``SqlStore``: the domain's :class:`~scanpay.domain.ports.OrderStore` on SQLAlchemy Core.

Every status change is ``UPDATE orders SET status=:to, last_seq=last_seq+1 WHERE id=:id AND
status=:from``; the loser of a race re-reads and asks the state machine again (which turns a
duplicate into a no-op). The event row (and the attempt update) go in the same transaction.
The blocking database calls run off the event loop: on one database thread per store for
SQLite (one writer at a time anyway), on the default thread pool for PostgreSQL. The common
payment notification is one transaction (:meth:`SqlStore.settle_payment`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection

from scanpay.domain import machine
from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    AttemptStatus,
    Event,
    EventType,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentReport,
    utcnow,
)
from scanpay.domain.ports import (
    Applied,
    AttemptUpdate,
    IdempotencyClaim,
    PlacedOrder,
    ReceivedNotification,
)
from scanpay.domain.service import Judge, ReportOutcome
from scanpay.errors import ConflictError, InvalidTransitionError, NotFoundError
from scanpay.store.group_commit import GroupCommit
from scanpay.store.lifecycle import LifecycleStore
from scanpay.store.migrate import writer
from scanpay.store.rows import append_event, attempt_values
from scanpay.store.rows import attempt_from_row as _attempt
from scanpay.store.rows import event_from_row as _event
from scanpay.store.rows import order_from_row as _order
from scanpay.store.settle import (
    AlchemyOps,
    PgSettler,
    SettleRequest,
    SqliteSettler,
    settle,
)
from scanpay.store.tables import (
    events,
    idempotency_keys,
    orders,
    payment_attempts,
)

R = TypeVar("R")
_CAS_ROUNDS = 16
# PostgreSQL's group commit waits at most this long for a batch to fill up to the recent
# concurrency (scanpay.store.group_commit; docs/benchmarks.md "Several instances ...").
PG_GATHER_SECONDS: Final = 0.004
_OPEN = (AttemptStatus.CREATING, AttemptStatus.ACTIVE)


class SqlStore(LifecycleStore):
    """Orders, attempts and events in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self._clock = clock
        # SQLite has one writer at a time: one database thread per store queues this
        # process's transactions in order, instead of threads sleeping in SQLite's busy
        # handler for the write lock (other processes still wait on the busy timeout).
        sqlite = engine.dialect.name == "sqlite"
        self._executor = ThreadPoolExecutor(1, "scanpay-db") if sqlite else None
        # The notification hot path on SQLite: one pooled connection kept for it, used on the
        # database thread only, with group commit (scanpay.store.settle).
        self._hot: PoolProxiedConnection | None = None
        self._group: GroupCommit[SettleRequest, ReportOutcome | None] | None = None
        # PostgreSQL: group commit through psycopg on a connection and thread of its own.
        self._settler: PgSettler | None = None
        self._settle_executor: ThreadPoolExecutor | None = None
        self._autocommit: sa.Engine | None = None
        if engine.dialect.name == "postgresql":
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._settler = PgSettler(engine, clock)
            self._settle_executor = ThreadPoolExecutor(1, "scanpay-settle")
            self._group = GroupCommit(
                self._settle_executor, self._settler.run_batch, gather_seconds=PG_GATHER_SECONDS
            )
        if self._executor is not None:
            self._hot = engine.raw_connection()
            driver = self._hot.driver_connection
            if isinstance(driver, sqlite3.Connection):
                self._group = GroupCommit(self._executor, SqliteSettler(driver, clock).run_batch)

    def close(self) -> None:
        """Stop the database thread (after the calls already queued) and the connections."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._settle_executor is not None:
            self._settle_executor.shutdown(wait=True)
        if self._settler is not None:
            self._settler.close()
        if self._hot is not None:
            self._hot.close()
            self._hot = None
        self.engine.dispose()

    # ---- reads -------------------------------------------------------------------------

    def _read(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection for a read of one statement (or of chunks that need no common
        snapshot). On PostgreSQL it runs in autocommit, without the BEGIN and COMMIT round
        trips a transaction adds (a status stream's read after each wake-up is one of these);
        on SQLite, whose reads cost no round trip, in a transaction as every other call."""
        if self._autocommit is not None:
            return self._autocommit.connect()
        return self.engine.begin()

    def _get_order(self, conn: sa.Connection, order_id: str) -> Order:
        row = conn.execute(sa.select(orders).where(orders.c.id == order_id)).first()
        if row is None:
            raise NotFoundError("no such order")
        return _order(row)

    def get_order_sync(self, order_id: str) -> Order:
        with self._read() as conn:
            return self._get_order(conn, order_id)

    async def get_order(self, order_id: str) -> Order:
        return await self._run(self.get_order_sync, order_id)

    def _current_attempt(self, conn: sa.Connection, order_id: str) -> PaymentAttempt:
        row = conn.execute(
            sa.select(payment_attempts)
            .where(
                payment_attempts.c.order_id == order_id,
                payment_attempts.c.replaced_by.is_(None),
            )
            .order_by(payment_attempts.c.created_at.desc(), payment_attempts.c.id)
            .limit(1)
        ).first()
        if row is None:
            raise NotFoundError("order has no payment attempt")
        return _attempt(row)

    def current_attempt_sync(self, order_id: str) -> PaymentAttempt:
        with self._read() as conn:
            return self._current_attempt(conn, order_id)

    async def current_attempt(self, order_id: str) -> PaymentAttempt:
        return await self._run(self.current_attempt_sync, order_id)

    def find_attempt_sync(self, out_trade_no: str) -> PaymentAttempt | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(payment_attempts).where(payment_attempts.c.out_trade_no == out_trade_no)
            ).first()
        return None if row is None else _attempt(row)

    async def find_attempt(self, out_trade_no: str) -> PaymentAttempt | None:
        return await self._run(self.find_attempt_sync, out_trade_no)

    def events_after_sync(self, order_id: str, seq: int) -> list[Event]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events)
                .where(events.c.order_id == order_id, events.c.seq > seq)
                .order_by(events.c.seq)
            ).all()
        return [_event(row) for row in rows]

    async def events_after(self, order_id: str, seq: int) -> list[Event]:
        return await self._run(self.events_after_sync, order_id, seq)

    def last_seqs_sync(self, order_ids: Collection[str]) -> dict[str, int]:
        """``{order_id: last_seq}`` for the orders that exist (one query per 500 ids)."""
        ids, found = list(order_ids), {}
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(_LAST_SEQS, {"ids": chunk})
                found.update({row.id: row.last_seq for row in rows})
        return found

    async def last_seqs(self, order_ids: Collection[str]) -> dict[str, int]:
        """What status streams poll for changes made by other processes."""
        return await self._run(self.last_seqs_sync, order_ids)

    # ---- writes ------------------------------------------------------------------------

    def _append_event(
        self,
        conn: sa.Connection,
        order_id: str,
        kind: EventType,
        data: Mapping[str, Any],
        *,
        new_status: OrderStatus | None = None,
        expected: OrderStatus | None = None,
    ) -> Event | None:
        return append_event(
            conn, self._clock(), order_id, kind, data, new_status=new_status, expected=expected
        )

    def create_order_sync(
        self, order: Order, attempt: PaymentAttempt, claim: IdempotencyClaim | None
    ) -> PlacedOrder:
        if claim is not None:
            replay = self._replay(claim)
            if replay is not None:
                return replay
        try:
            with self._writer.begin() as conn:
                conn.execute(
                    sa.insert(orders).values(
                        id=order.id,
                        amount=order.amount,
                        currency=order.currency,
                        description=order.description,
                        status=order.status.value,
                        last_seq=0,
                        created_at=order.created_at,
                        updated_at=order.updated_at,
                        expires_at=order.expires_at,
                        return_url=order.return_url,
                    )
                )
                conn.execute(sa.insert(payment_attempts).values(**attempt_values(attempt)))
                if claim is not None:
                    conn.execute(
                        sa.insert(idempotency_keys).values(
                            key=claim.key,
                            fingerprint=claim.fingerprint,
                            order_id=order.id,
                            created_at=order.created_at,
                        )
                    )
                data = {"amount": order.amount, "out_trade_no": attempt.out_trade_no}
                self._append_event(conn, order.id, EventType.CREATED, data)
                stored = self._get_order(conn, order.id)
        except IntegrityError:
            # Lost a race for the same idempotency key: the winner's order is the answer.
            replay = self._replay(claim) if claim is not None else None
            if replay is None:
                raise
            return replay
        return PlacedOrder(stored, attempt, created=True)

    def _replay(self, claim: IdempotencyClaim) -> PlacedOrder | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(idempotency_keys).where(idempotency_keys.c.key == claim.key)
            ).first()
            if row is None:
                return None
            if row.fingerprint != claim.fingerprint:
                raise ConflictError(
                    "this Idempotency-Key was used with a different request",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            order = self._get_order(conn, row.order_id)
            return PlacedOrder(order, self._current_attempt(conn, order.id), created=False)

    async def create_order(
        self, order: Order, attempt: PaymentAttempt, claim: IdempotencyClaim | None
    ) -> PlacedOrder:
        return await self._run(self.create_order_sync, order, attempt, claim)

    def _finish_attempt(
        self,
        attempt_id: str,
        status: AttemptStatus,
        kind: EventType,
        data: Mapping[str, Any],
        code_url: str | None = None,
    ) -> PaymentAttempt:
        now = self._clock()
        with self._writer.begin() as conn:
            values: dict[str, Any] = {"status": status.value, "updated_at": now}
            if code_url is not None:
                values["code_url"] = code_url
            row = conn.execute(
                sa.update(payment_attempts)
                .where(
                    payment_attempts.c.id == attempt_id,
                    payment_attempts.c.status == AttemptStatus.CREATING.value,
                )
                .values(**values)
                .returning(*payment_attempts.c)
            ).first()
            if row is None:
                current = conn.execute(
                    sa.select(payment_attempts).where(payment_attempts.c.id == attempt_id)
                ).first()
                if current is None:
                    raise NotFoundError("no such payment attempt")
                return _attempt(current)  # someone else finished it first
            attempt = _attempt(row)
            self._append_event(conn, attempt.order_id, kind, data)
            return attempt

    async def activate_attempt(self, attempt_id: str, code_url: str) -> PaymentAttempt:
        return await self._run(
            self._finish_attempt,
            attempt_id,
            AttemptStatus.ACTIVE,
            EventType.QR_READY,
            {"code_url": code_url},
            code_url,
        )

    async def fail_attempt(self, attempt_id: str, reason: str) -> PaymentAttempt:
        return await self._run(
            self._finish_attempt,
            attempt_id,
            AttemptStatus.FAILED,
            EventType.ATTEMPT_FAILED,
            {"reason": reason},
        )

    def apply_trigger_sync(
        self,
        order_id: str,
        trigger: Trigger,
        data: Mapping[str, Any],
        attempt: AttemptUpdate | None = None,
    ) -> Applied:
        for _ in range(_CAS_ROUNDS):
            current = self.get_order_sync(order_id)
            step = machine.step(current.status, trigger)
            if step.to_status is None:
                return Applied(current, step, None)
            with self._writer.begin() as conn:
                event = self._append_event(
                    conn,
                    order_id,
                    machine.EVENT_FOR[step.to_status],
                    {**data, "from": current.status.value, "trigger": trigger.value},
                    new_status=step.to_status,
                    expected=current.status,
                )
                if event is None:
                    continue  # lost the race: re-read and ask the machine again
                if attempt is not None:
                    _update_attempt(conn, attempt, event.created_at)
                return Applied(self._get_order(conn, order_id), step, event)
        raise InvalidTransitionError("order kept changing; gave up")

    async def apply_trigger(
        self,
        order_id: str,
        trigger: Trigger,
        data: Mapping[str, Any],
        attempt: AttemptUpdate | None = None,
    ) -> Applied:
        return await self._run(self.apply_trigger_sync, order_id, trigger, data, attempt)

    def settle_payment_sync(
        self,
        report: PaymentReport,
        judge: Judge,
        trigger: Trigger,
        data: Mapping[str, Any],
        receipt: ReceivedNotification | None,
    ) -> ReportOutcome | None:
        """The common report in one write transaction through SQLAlchemy (see
        :func:`scanpay.store.settle.settle`); :meth:`settle_payment` uses it on PostgreSQL."""
        with self._writer.begin() as conn:
            request = SettleRequest(report, judge, trigger, data, receipt)
            return settle(AlchemyOps(conn), self._clock(), request)

    async def settle_payment(
        self,
        report: PaymentReport,
        judge: Judge,
        trigger: Trigger,
        data: Mapping[str, Any],
        receipt: ReceivedNotification | None,
    ) -> ReportOutcome | None:
        """:func:`scanpay.store.settle.settle` in one transaction, with group commit: the
        notifications that arrive while a transaction runs share the next one. On SQLite
        through the ``sqlite3`` connection on the database thread; on PostgreSQL through
        the ``psycopg`` connection kept for it, on its own thread."""
        if self._group is None:
            return await self._run(self.settle_payment_sync, report, judge, trigger, data, receipt)
        return await self._group.submit(SettleRequest(report, judge, trigger, data, receipt))

    def record_alert_sync(
        self, order_id: str | None, reason: str, data: Mapping[str, Any]
    ) -> Event:
        payload = {"reason": reason, **data}
        with self._writer.begin() as conn:
            if order_id is not None:
                event = self._append_event(conn, order_id, EventType.ALERT, payload)
                if event is None:
                    raise NotFoundError("no such order")
                return event
            now = self._clock()
            conn.execute(
                sa.insert(events).values(
                    order_id=None,
                    seq=0,
                    type=EventType.ALERT.value,
                    status=None,
                    data=payload,
                    created_at=now,
                )
            )
            return Event(None, 0, EventType.ALERT, None, payload, now)

    async def record_alert(
        self, order_id: str | None, reason: str, data: Mapping[str, Any]
    ) -> Event:
        return await self._run(self.record_alert_sync, order_id, reason, data)

    def record_notification_sync(self, received: ReceivedNotification) -> None:
        with self._writer.begin() as conn:
            AlchemyOps(conn).keep_receipt(
                received, received.outcome, received.detail, self._clock()
            )

    async def record_notification(self, received: ReceivedNotification) -> None:
        await self._run(self.record_notification_sync, received)

    async def run_blocking(self, fn: Callable[..., R], *args: Any) -> R:
        """Run a blocking database call where this store runs its own (issue 9's
        housekeeping: refused bodies, retention pruning)."""
        return await self._run(fn, *args)

    def alerts_sync(self) -> list[Event]:
        """Every alert event (operators and tests)."""
        with self.engine.begin() as conn:
            query = sa.select(events).where(events.c.type == EventType.ALERT.value)
            rows = conn.execute(query.order_by(events.c.id)).all()
        return [_event(row) for row in rows]


_LAST_SEQS: Final = sa.select(orders.c.id, orders.c.last_seq).where(
    orders.c.id.in_(sa.bindparam("ids", expanding=True))
)


def _set_attempt(*, closes: bool) -> sa.Update:
    values: dict[str, Any] = {
        "status": sa.bindparam("status", type_=payment_attempts.c.status.type),
        "transaction_id": sa.bindparam("transaction_id", type_=sa.String()),
        "updated_at": sa.bindparam("now", type_=payment_attempts.c.updated_at.type),
    }
    if closes:
        values["next_query_at"] = None  # nothing left to ask WeChat
    where = payment_attempts.c.id == sa.bindparam("attempt_id")
    return sa.update(payment_attempts).where(where).values(values)


# Built once (see rows._bump): keyed by "the attempt is no longer open".
_SET_ATTEMPT: Final = {closes: _set_attempt(closes=closes) for closes in (False, True)}


def _update_attempt(conn: sa.Connection, attempt: AttemptUpdate, now: datetime) -> None:
    conn.execute(
        _SET_ATTEMPT[attempt.status not in _OPEN],
        {
            "attempt_id": attempt.attempt_id,
            "status": attempt.status.value,
            "transaction_id": attempt.transaction_id,
            "now": now,
        },
    )
