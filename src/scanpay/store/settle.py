"""The payment notification's one transaction, and its SQLite fast path with group commit.

:func:`settle` is the decision, written once: read the attempt (by ``out_trade_no``) with
its order's status, let the domain's judge decide, then either pay (compare-and-set on the
order, event row, attempt row) or change nothing (duplicate), and keep the received
notification with the outcome. It runs against :class:`SettleOps`, which two back-ends
implement:

* :class:`AlchemyOps` — SQLAlchemy Core on any engine (the general path's reference);
* :class:`PgOps` — the same through the ``psycopg`` connection itself in pipeline mode, used
  by :class:`PgSettler` on one kept connection and its own thread, with group commit: one
  round trip reads and locks every row the batch needs, the writes (one statement per table
  for the whole batch) go with the commit. On
  PostgreSQL each round trip is a network wait and the commit, with migration 0010's NOTIFY
  trigger, takes a cluster-wide lock: both are paid about twice per batch, not four times per
  notification;
* :class:`SqliteOps` — the same five statements through the ``sqlite3`` connection itself,
  used by :class:`SqliteSettler` on the store's database thread, many notifications per
  transaction (:mod:`scanpay.store.group_commit`). SQLAlchemy's per-statement and
  per-transaction machinery costs more than SQLite itself on this path; the rows written are
  the same, column for column (``tests/store/test_settle.py`` compares them).
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

import psycopg
import sqlalchemy as sa
from sqlalchemy.pool import PoolProxiedConnection

from scanpay.domain import machine
from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    Event,
    OrderStatus,
    PaymentAttempt,
    PaymentReport,
)
from scanpay.domain.ports import ReceivedNotification
from scanpay.domain.service import Judge, ReportOutcome, ReportVerdict
from scanpay.store.group_commit import run_each_alone
from scanpay.store.rows import append_event
from scanpay.store.rows import attempt_from_row as _attempt
from scanpay.store.tables import notifications_received, orders, payment_attempts


class SettleRequest(NamedTuple):
    report: PaymentReport
    judge: Judge
    trigger: Trigger
    data: Mapping[str, Any]
    receipt: ReceivedNotification | None


class SettleOps(Protocol):
    """The statements :func:`settle` needs, inside one open write transaction."""

    def attempt_with_status(self, out_trade_no: str) -> tuple[PaymentAttempt, OrderStatus] | None:
        """The attempt and its order's status, or None."""
        ...

    def transition(self, order_id: str, event: Event, expected: OrderStatus) -> Event | None:
        """Compare-and-set the order to ``event.status`` (bumping ``last_seq``) and insert
        the event with the new sequence number; None when ``expected`` no longer holds."""
        ...

    def attempt_paid(self, attempt_id: str, transaction_id: str | None, now: datetime) -> None: ...

    def keep_receipt(
        self, receipt: ReceivedNotification, outcome: str, detail: str, now: datetime
    ) -> None: ...


def settle(ops: SettleOps, now: datetime, request: SettleRequest) -> ReportOutcome | None:
    """The common payment report in the caller's transaction (see the module docstring).
    None, with nothing written, when the attempt is unknown, the judge declines or the
    compare-and-set loses (the general path then decides)."""
    report, judge, trigger, data, receipt = request
    found = ops.attempt_with_status(report.out_trade_no)
    if found is None:
        return None
    attempt, status = found
    outcome = judge(attempt, status)
    if outcome is None:
        return None
    if outcome.verdict is ReportVerdict.APPLIED:
        step = machine.step(status, trigger)
        if step.to_status is None:
            return None
        payload = {**data, "from": status.value, "trigger": trigger.value}
        kind = machine.EVENT_FOR[step.to_status]
        event = ops.transition(
            attempt.order_id, Event(attempt.order_id, 0, kind, step.to_status, payload, now), status
        )
        if event is None:
            return None  # changed under us (PostgreSQL): the general path decides
        ops.attempt_paid(attempt.id, report.transaction_id, now)
    if receipt is not None:
        ops.keep_receipt(receipt, outcome.verdict.value, outcome.reason, now)
    return outcome


def receipt_values(
    received: ReceivedNotification, outcome: str, detail: str, now: datetime
) -> dict[str, Any]:
    """The ``notifications_received`` row (text columns cut to their widths)."""
    return {
        "api": received.api,
        "received_at": now,
        "out_trade_no": (received.out_trade_no or None) and received.out_trade_no[:64],
        "body": received.body,
        "outcome": outcome[:32],
        "detail": detail[:256],
        "client": received.source and received.source[:64],
    }


# ---- SQLAlchemy Core -----------------------------------------------------------------------

# The attempt and its order's status in one read (the columns of payment_attempts, plus
# ``order_status``); built once, so SQLAlchemy's compiled cache serves every call.
_ATTEMPT_WITH_ORDER: Final[sa.Select[Any]] = (
    sa.select(*payment_attempts.c, orders.c.status.label("order_status"))
    .join(orders, orders.c.id == payment_attempts.c.order_id)
    .where(payment_attempts.c.out_trade_no == sa.bindparam("out_trade_no"))
)
_ATTEMPT_PAID: Final = (
    sa.update(payment_attempts)
    .where(payment_attempts.c.id == sa.bindparam("attempt_id"))
    .values(
        status=AttemptStatus.PAID.value,
        transaction_id=sa.bindparam("transaction_id", type_=sa.String()),
        updated_at=sa.bindparam("now", type_=payment_attempts.c.updated_at.type),
        next_query_at=None,  # nothing left to ask WeChat
    )
)
_INSERT_RECEIPT: Final = sa.insert(notifications_received)


class AlchemyOps:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def attempt_with_status(self, out_trade_no: str) -> tuple[PaymentAttempt, OrderStatus] | None:
        row = self.conn.execute(_ATTEMPT_WITH_ORDER, {"out_trade_no": out_trade_no}).first()
        return None if row is None else (_attempt(row), OrderStatus(row.order_status))

    def transition(self, order_id: str, event: Event, expected: OrderStatus) -> Event | None:
        return append_event(
            self.conn, event.created_at, order_id, event.type, event.data,
            new_status=event.status, expected=expected,
        )  # fmt: skip

    def attempt_paid(self, attempt_id: str, transaction_id: str | None, now: datetime) -> None:
        params = {"attempt_id": attempt_id, "transaction_id": transaction_id, "now": now}
        self.conn.execute(_ATTEMPT_PAID, params)

    def keep_receipt(
        self, receipt: ReceivedNotification, outcome: str, detail: str, now: datetime
    ) -> None:
        self.conn.execute(_INSERT_RECEIPT, receipt_values(receipt, outcome, detail, now))


# ---- sqlite3 directly ----------------------------------------------------------------------

_ATTEMPT_COLUMNS: Final = (
    "id", "order_id", "out_trade_no", "api_version", "appid", "mchid", "amount", "currency",
    "status", "created_at", "updated_at", "code_url", "transaction_id", "expires_at",
    "next_query_at", "query_count", "last_query_at",
)  # fmt: skip
_SELECT_ATTEMPT: Final = (
    "SELECT "
    + ", ".join(f"a.{name}" for name in _ATTEMPT_COLUMNS)
    + ", o.status FROM payment_attempts AS a JOIN orders AS o ON o.id = a.order_id"
    " WHERE a.out_trade_no = ?"
)
_BUMP: Final = (
    "UPDATE orders SET last_seq = last_seq + 1, updated_at = ?, status = ?"
    " WHERE id = ? AND status = ? RETURNING last_seq"
)
_INSERT_EVENT: Final = (
    "INSERT INTO events (order_id, seq, type, status, data, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_PAID: Final = (
    "UPDATE payment_attempts SET status = ?, transaction_id = ?, updated_at = ?,"
    " next_query_at = NULL WHERE id = ?"
)
_RECEIPT: Final = (
    "INSERT INTO notifications_received"
    " (api, received_at, out_trade_no, body, outcome, detail, client)"
    " VALUES (:api, :received_at, :out_trade_no, :body, :outcome, :detail, :client)"
)


def sqlite_time(value: datetime) -> str:
    """A UTC instant as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


class SqliteOps:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def attempt_with_status(self, out_trade_no: str) -> tuple[PaymentAttempt, OrderStatus] | None:
        row = self.conn.execute(_SELECT_ATTEMPT, (out_trade_no,)).fetchone()
        if row is None:
            return None
        (ident, order_id, trade_no, api, appid, mchid, amount, currency, status, created,
         updated, code_url, transaction_id, expires, next_query, count, last_query,
         order_status) = row  # fmt: skip
        attempt = PaymentAttempt(
            id=ident,
            order_id=order_id,
            out_trade_no=trade_no,
            api_version=ApiVersion(api),
            appid=appid,
            mchid=mchid,
            amount=amount,
            currency=currency,
            status=AttemptStatus(status),
            created_at=datetime.fromisoformat(created).replace(tzinfo=UTC),
            updated_at=datetime.fromisoformat(updated).replace(tzinfo=UTC),
            code_url=code_url,
            transaction_id=transaction_id,
            expires_at=_time(expires),
            next_query_at=_time(next_query),
            query_count=count,
            last_query_at=_time(last_query),
        )
        return attempt, OrderStatus(order_status)

    def transition(self, order_id: str, event: Event, expected: OrderStatus) -> Event | None:
        if event.status is None:
            raise ValueError("a transition needs the new status")
        now = sqlite_time(event.created_at)
        row = self.conn.execute(
            _BUMP, (now, event.status.value, order_id, expected.value)
        ).fetchone()
        if row is None:
            return None
        seq = row[0]
        self.conn.execute(
            _INSERT_EVENT,
            (order_id, seq, event.type.value, event.status.value, json.dumps(event.data), now),
        )
        return Event(order_id, seq, event.type, event.status, event.data, event.created_at)

    def attempt_paid(self, attempt_id: str, transaction_id: str | None, now: datetime) -> None:
        self.conn.execute(
            _PAID, (AttemptStatus.PAID.value, transaction_id, sqlite_time(now), attempt_id)
        )

    def keep_receipt(
        self, receipt: ReceivedNotification, outcome: str, detail: str, now: datetime
    ) -> None:
        values = receipt_values(receipt, outcome, detail, now)
        self.conn.execute(_RECEIPT, {**values, "received_at": sqlite_time(now)})


class BatchSettler(ABC):
    """Runs a batch of :class:`SettleRequest` in one transaction (:meth:`_transaction`, the
    back-end's); if that fails, one transaction per request, so a failing request fails
    alone. The ``run_batch`` that :class:`~scanpay.store.group_commit.GroupCommit` calls."""

    def run_batch(
        self, requests: Sequence[SettleRequest]
    ) -> list[ReportOutcome | BaseException | None]:
        try:
            outcomes = self._transaction(requests)
        except Exception:
            if len(requests) == 1:
                raise
            return run_each_alone(requests, lambda request: self._transaction([request])[0])
        return list(outcomes)

    @abstractmethod
    def _transaction(self, requests: Sequence[SettleRequest]) -> list[ReportOutcome | None]:
        """All of ``requests`` in one transaction, committed, or an exception (rolled back)."""


class SqliteSettler(BatchSettler):
    """Batches on one ``sqlite3`` connection (the store's database thread only): one
    ``BEGIN IMMEDIATE`` ... ``COMMIT`` per batch."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], datetime]) -> None:
        if conn.isolation_level is not None:
            raise ValueError("the connection must be in autocommit mode (isolation_level=None)")
        self._conn = conn
        self._ops = SqliteOps(conn)
        self._clock = clock

    def _transaction(self, requests: Sequence[SettleRequest]) -> list[ReportOutcome | None]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [settle(self._ops, self._clock(), request) for request in requests]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes


# ---- psycopg directly (PostgreSQL) --------------------------------------------------------

# A batch's attempts with their orders' status and last_seq, the orders locked (FOR UPDATE, in
# out_trade_no order so that two instances with overlapping batches lock in the same order;
# orders before attempts, as the general path's compare-and-set does): under the lock the
# compare-and-set cannot lose (a payment changes its attempt only after locking the order), so
# the writes need no answer and are pipelined. Written as an ordered scan of the attempts and
# a LATERAL lookup of each order that locks it, so the plan is index lookups whatever the
# statistics say: as a plain join, the planner hashed a sequential scan of all orders for every
# batch while the table's statistics were those of a young database.
_PG_SELECT_BATCH: Final = (
    "SELECT "
    + ", ".join(f"a.{name}" for name in _ATTEMPT_COLUMNS)
    + ", o.status, o.last_seq FROM (SELECT * FROM payment_attempts WHERE out_trade_no = ANY(%b)"
    " ORDER BY out_trade_no OFFSET 0) AS a CROSS JOIN LATERAL (SELECT status, last_seq FROM"
    " orders WHERE orders.id = a.order_id FOR UPDATE) AS o"
)
# The batch's writes in one statement (the notifications' rows as arrays, unnested): one
# UPDATE of orders, so migration 0010's statement trigger sends one NOTIFY per batch; the
# events, the attempts paid and the notifications received in the same statement. Parameters
# go in binary (%b): psycopg's text format quotes every array element with a regex.
_RECEIPT_COLUMNS: Final = (
    "api", "received_at", "out_trade_no", "body", "outcome", "detail", "client",
)  # fmt: skip
_PG_WRITES: Final = (
    "WITH bumped AS (UPDATE orders SET last_seq = v.seq, updated_at = v.now, status = v.status"
    " FROM unnest(%b::text[], %b::int[], %b::text[], %b::timestamptz[]) AS v(id, seq, status, now)"
    " WHERE orders.id = v.id),"
    " evented AS (INSERT INTO events (order_id, seq, type, status, data, created_at) SELECT * FROM"
    " unnest(%b::text[], %b::int[], %b::text[], %b::text[], %b::json[], %b::timestamptz[])),"
    " paid AS (UPDATE payment_attempts SET status = %b, transaction_id = v.txn,"
    " updated_at = v.now, next_query_at = NULL"
    " FROM unnest(%b::text[], %b::text[], %b::timestamptz[]) AS v(id, txn, now)"
    " WHERE payment_attempts.id = v.id)"
    f" INSERT INTO notifications_received ({', '.join(_RECEIPT_COLUMNS)}) SELECT * FROM unnest("
    "%b::text[], %b::timestamptz[], %b::text[], %b::bytea[], %b::text[], %b::text[], %b::text[])"
)


class PgOps:
    """:class:`SettleOps` on a psycopg 3 connection in pipeline mode (PostgreSQL), inside its
    transaction: :meth:`lock` reads and locks the batch's rows in one round trip, the rest
    answers from them and collects its writes; :meth:`flush` sends them, one statement for the
    whole batch (it travels with the commit)."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        self._attempts: dict[str, PaymentAttempt] = {}
        self._numbers: dict[str, str] = {}  # attempt id -> out_trade_no
        self._orders: dict[str, tuple[OrderStatus, int]] = {}  # status, last_seq
        self._bumps: list[tuple[str, int, str, datetime]] = []
        self._events: list[tuple[str, int, str, str, str, datetime]] = []
        self._paid: list[tuple[str, str | None, datetime]] = []
        self._receipts: list[tuple[Any, ...]] = []
        self._bumped: set[str] = set()

    def lock(self, out_trade_nos: Sequence[str]) -> None:
        rows = self.conn.execute(_PG_SELECT_BATCH, (list(out_trade_nos),)).fetchall()
        for row in rows:
            (ident, order_id, trade_no, api, appid, mchid, amount, currency, status, created,
             updated, code_url, transaction_id, expires, next_query, count, last_query,
             order_status, last_seq) = row  # fmt: skip
            self._attempts[trade_no] = PaymentAttempt(
                id=ident,
                order_id=order_id,
                out_trade_no=trade_no,
                api_version=ApiVersion(api),
                appid=appid,
                mchid=mchid,
                amount=amount,
                currency=currency,
                status=AttemptStatus(status),
                created_at=created.astimezone(UTC),
                updated_at=updated.astimezone(UTC),
                code_url=code_url,
                transaction_id=transaction_id,
                expires_at=_utc(expires),
                next_query_at=_utc(next_query),
                query_count=count,
                last_query_at=_utc(last_query),
            )
            self._numbers[ident] = trade_no
            self._orders[order_id] = (OrderStatus(order_status), last_seq)

    def attempt_with_status(self, out_trade_no: str) -> tuple[PaymentAttempt, OrderStatus] | None:
        if out_trade_no not in self._attempts:
            self.lock([out_trade_no])
        attempt = self._attempts.get(out_trade_no)
        if attempt is None:
            return None
        return attempt, self._orders[attempt.order_id][0]

    def transition(self, order_id: str, event: Event, expected: OrderStatus) -> Event | None:
        if event.status is None:
            raise ValueError("a transition needs the new status")
        status, last_seq = self._orders[order_id]  # locked by attempt_with_status
        if status is not expected or order_id in self._bumped:
            return None  # (a second change of one order in a batch: the general path)
        seq = last_seq + 1
        now = event.created_at
        self._bumps.append((order_id, seq, event.status.value, now))
        data = json.dumps(event.data)
        self._events.append((order_id, seq, event.type.value, event.status.value, data, now))
        self._orders[order_id] = (event.status, seq)
        self._bumped.add(order_id)
        return Event(order_id, seq, event.type, event.status, event.data, now)

    def attempt_paid(self, attempt_id: str, transaction_id: str | None, now: datetime) -> None:
        self._paid.append((attempt_id, transaction_id, now))
        number = self._numbers.get(attempt_id)
        if number is not None:
            self._attempts[number] = replace(
                self._attempts[number], status=AttemptStatus.PAID, transaction_id=transaction_id
            )

    def keep_receipt(
        self, receipt: ReceivedNotification, outcome: str, detail: str, now: datetime
    ) -> None:
        values = receipt_values(receipt, outcome, detail, now)
        if len(values) != len(_RECEIPT_COLUMNS):
            raise RuntimeError("notifications_received columns changed: update _PG_WRITES")
        self._receipts.append(tuple(values[name] for name in _RECEIPT_COLUMNS))

    def flush(self) -> None:
        """Send the collected writes, one statement (pipelined: no waiting for its answer)."""
        if self._bumps or self._paid or self._receipts:
            self.conn.execute(
                _PG_WRITES,
                [
                    *_columns(self._bumps, 4),
                    *_columns(self._events, 6),
                    AttemptStatus.PAID.value,
                    *_columns(self._paid, 3),
                    *_columns(self._receipts, len(_RECEIPT_COLUMNS)),
                ],
            )
        self._bumps, self._events, self._paid, self._receipts = [], [], [], []
        self._bumped.clear()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (the arrays ``unnest`` turns back into rows)."""
    return [[row[i] for row in rows] for i in range(width)]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class PgSettler(BatchSettler):
    """Batches in one transaction each on a psycopg connection kept for it (its own thread
    only). A connection the database dropped is replaced on the next batch."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock
        self._raw: PoolProxiedConnection | None = None
        self.transactions = 0  # for tests and benchmarks

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        conn = self._raw.driver_connection
        if not isinstance(conn, psycopg.Connection):
            raise TypeError("PgSettler needs the psycopg driver (postgresql+psycopg://)")
        return conn

    def _transaction(self, requests: Sequence[SettleRequest]) -> list[ReportOutcome | None]:
        conn = self._connection()
        try:
            with conn.pipeline(), conn.transaction():
                ops = PgOps(conn)
                ops.lock([request.report.out_trade_no for request in requests])
                outcomes = [settle(ops, self._clock(), request) for request in requests]
                ops.flush()
        except psycopg.OperationalError:
            self.close(invalidate=True)  # the server went away: a new connection next time
            raise
        self.transactions += 1
        return outcomes

    @property
    def backend_pid(self) -> int | None:
        """The server process of the kept connection (tests end it on purpose)."""
        if self._raw is None:
            return None
        conn = self._raw.driver_connection
        return conn.info.backend_pid if isinstance(conn, psycopg.Connection) else None

    def close(self, *, invalidate: bool = False) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        if invalidate:
            raw.invalidate()
        else:
            raw.close()
