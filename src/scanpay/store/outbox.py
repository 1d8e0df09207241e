"""The shop-facing outbox over the ``events`` table, and webhook endpoints and deliveries.

Every change already writes its ``events`` row in its own transaction. :meth:`publish`
(one publisher at a time: SQLite's write lock, a transaction-scoped advisory lock on
PostgreSQL) takes the rows not yet published, oldest first, gives each the next
``position`` (so positions follow commit order and ``GET /api/events?after=`` never skips
a row committed late), and for shop-facing types an ``evt_…`` id, the JSON body webhooks
carry (built once, so every attempt sends the same bytes) and one delivery per enabled
endpoint that wants the type — all in one transaction. :meth:`claim` leases due deliveries
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL) whose order has no earlier delivery pending for
the same endpoint, so an order's events arrive in order and nothing else waits.
:meth:`cycle_sync` is the worker's pass: record, publish and claim in one transaction, a
few statements (built once, executemany or arrays for many rows) whatever the batch size.
On PostgreSQL a worker's publish takes the new deliveries it has room for into one
``webhook_batches`` row instead of a row each; a delivery's row is written when its first
attempt is recorded (:class:`Mine`, :func:`_record_first`, docs/webhooks.md "Batches").
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from scanpay.domain.events import SHOP_FACING, STORED_FOR, ShopEventType, shop_type
from scanpay.domain.model import EventType
from scanpay.errors import NotFoundError
from scanpay.store.migrate import writer
from scanpay.store.tables import UtcDateTime, events, orders, payment_attempts
from scanpay.store.webhook_tables import (
    PG_HELD_OF,
    pending,
    webhook_attempts,
    webhook_batches,
    webhook_deliveries,
    webhook_endpoints,
)

log = logging.getLogger(__name__)
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
SETTINGS_ENDPOINT: Final = "we_settings"
_PUBLISH_LOCK: Final = 0x5CA9_0008  # pg_advisory_xact_lock key of the publisher
E = events.c
D = webhook_deliveries.c
W = webhook_endpoints.c


_ANY_UNPUBLISHED: Final = sa.select(E.id).where(E.position.is_(None)).limit(1)
_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# the publisher's statements, built once
_LOCK_PUBLISHER: Final = sa.select(sa.func.pg_advisory_xact_lock(_PUBLISH_LOCK))
_O = orders.c
_UNPUBLISHED: Final = (  # with the order each row shows and the last position given
    sa.select(
        E.id,
        E.order_id,
        E.type,
        E.status,
        E.data,
        E.created_at,
        _O.amount,
        _O.currency,
        _O.description,
        _O.created_at.label("order_created_at"),
        sa.select(sa.func.coalesce(sa.func.max(E.position), 0)).scalar_subquery().label("last"),
    )
    .select_from(events.outerjoin(orders, _O.id == E.order_id))
    .where(E.position.is_(None))
    .order_by(E.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_ENABLED_ENDPOINTS: Final = sa.select(
    W.id, W.event_types, W.url, W.secret, W.previous_secret, W.previous_until
).where(W.disabled_at.is_(None))
# PostgreSQL: a pass's positions and its deliveries each as one statement over arrays; an
# executemany ran a statement per row (16,000 inserts for 2,000 payments to 8 endpoints,
# each parsed, planned, locked and checked on its own)
_PG_SET_POSITIONS: Final = sa.text(
    "UPDATE events AS e SET position = k.pos, public_id = k.pid, body = k.b"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:pos AS bigint[]), CAST(:pid AS varchar[]),"
    " CAST(:b AS text[])) AS k(id, pos, pid, b)"
    " WHERE e.id = k.id AND e.id = ANY(CAST(:ids AS integer[]))"
)
# PostgreSQL: pending rows for the new deliveries a worker does not take into its batch (or
# every one, without a worker), and for taken ones that have to wait after all; a deleted
# endpoint's come out cancelled, as its pending rows did when it was deleted
_PG_INSERT_DELIVERIES: Final = sa.text(
    "INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, status, attempts,"
    " next_attempt_at, created_at, updated_at)"
    f" SELECT k.e, k.ep, k.o, CASE WHEN w.disabled_reason = 'deleted' THEN '{CANCELLED}'"
    f" ELSE '{PENDING}' END, 0, :now, :now, :now"
    " FROM unnest(CAST(:events AS integer[]), CAST(:endpoints AS varchar[]),"
    " CAST(:orders AS varchar[])) WITH ORDINALITY AS k(e, ep, o, n)"
    " JOIN webhook_endpoints AS w ON w.id = k.ep ORDER BY k.n"  # (ids in the order given)
    " ON CONFLICT (event_id, endpoint_id) DO NOTHING"
).bindparams(sa.bindparam("now", type_=UtcDateTime))
# PostgreSQL's batches (webhook_tables.py, docs/webhooks.md "Batches"): a worker's new
# deliveries are one row per pass until their first attempts are recorded
_PG_NEW_BATCH: Final = sa.text(
    "INSERT INTO webhook_batches (worker, lease_until, first_event, event_ids, endpoint_ids,"
    " created_at) VALUES (:worker, :until, :first, CAST(:events AS integer[]),"
    " CAST(:endpoints AS varchar[]), :now) RETURNING id"
).bindparams(sa.bindparam("now", type_=UtcDateTime), sa.bindparam("until", type_=UtcDateTime))
_PG_RENEW_BATCHES: Final = sa.text(
    "UPDATE webhook_batches SET lease_until = :until"
    " WHERE worker = :worker AND id = ANY(CAST(:ids AS integer[]))"
).bindparams(sa.bindparam("until", type_=UtcDateTime))
_PG_CLOSE_BATCHES: Final = sa.text(
    "DELETE FROM webhook_batches WHERE worker = :worker AND id = ANY(CAST(:ids AS integer[]))"
)
_PG_IN_BATCHES: Final = sa.text(  # which of the given events' pairs an open batch holds
    "SELECT p.e AS event_id, p.ep AS endpoint_id FROM webhook_batches AS b"
    " CROSS JOIN LATERAL unnest(b.event_ids, b.endpoint_ids) AS p(e, ep)"
    " WHERE b.first_event <= :last AND p.e = ANY(CAST(:ids AS integer[]))"
)
_ANY_EXPIRED: Final = sa.select(webhook_batches.c.id).where(
    webhook_batches.c.lease_until < sa.bindparam("now", type_=UtcDateTime)
)
# a batch whose worker stopped renewing it: its pairs without a row become pending rows
_PG_EXPAND: Final = sa.text(
    "WITH gone AS (DELETE FROM webhook_batches WHERE lease_until < :now"
    " RETURNING event_ids, endpoint_ids)"
    " INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, status, attempts,"
    " next_attempt_at, created_at, updated_at)"
    f" SELECT p.e, p.ep, ev.order_id, CASE WHEN w.disabled_reason = 'deleted'"
    f" THEN '{CANCELLED}' ELSE '{PENDING}' END, 0, :now, :now, :now"
    " FROM gone CROSS JOIN LATERAL unnest(gone.event_ids, gone.endpoint_ids) AS p(e, ep)"
    " JOIN events AS ev ON ev.id = p.e JOIN webhook_endpoints AS w ON w.id = p.ep"
    " ON CONFLICT (event_id, endpoint_id) DO NOTHING"
).bindparams(sa.bindparam("now", type_=UtcDateTime))
# the published events of the given orders before the given event ids (an order's earlier
# events, which its later ones wait for): a subquery per order, on the (order_id, seq) key
# (as a join it took 10.1 us of statement time per delivery in a burst; this, 8.5)
_PG_EARLIER: Final = sa.text(
    "SELECT k.o AS order_id, (SELECT array_agg(p.id) FROM events AS p WHERE p.order_id = k.o"
    " AND p.id < k.e AND p.public_id IS NOT NULL) AS ids"
    " FROM unnest(CAST(:orders AS varchar[]), CAST(:before AS integer[])) AS k(o, e)"
)
_PG_ROWS_OF: Final = sa.text(
    "SELECT event_id, endpoint_id, status FROM webhook_deliveries"
    " WHERE event_id = ANY(CAST(:ids AS integer[]))"
)
_PG_ENABLED: Final = sa.text(
    "SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL"
    " AND id = ANY(CAST(:ids AS varchar[]))"
)
# a batch's attempt: its delivery row written as the attempt left it (a row already there,
# from a resend or an expanded batch, keeps its state and gains the attempt), and the attempt
_PG_RECORD_FIRST: Final = sa.text(
    "WITH f AS (INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, status,"
    " attempts, next_attempt_at, last_status, created_at, updated_at)"
    " SELECT k.e, k.ep, k.o, k.st, 1, k.nxt, k.code, k.at, k.at"
    " FROM unnest(CAST(:events AS integer[]), CAST(:endpoints AS varchar[]),"
    " CAST(:orders AS varchar[]), CAST(:st AS varchar[]), CAST(:nxt AS timestamptz[]),"
    " CAST(:code AS integer[]), CAST(:at AS timestamptz[])) AS k(e, ep, o, st, nxt, code, at)"
    " ON CONFLICT (event_id, endpoint_id) DO UPDATE SET updated_at = EXCLUDED.updated_at"
    " RETURNING id, event_id, endpoint_id, xmax = 0 AS fresh),"
    " kept AS (INSERT INTO webhook_attempts"
    " (delivery_id, attempted_at, status_code, latency_ms, response, error)"
    " SELECT f.id, k.at, k.code, k.ms, k.resp, k.err FROM f JOIN unnest("
    " CAST(:events AS integer[]), CAST(:endpoints AS varchar[]), CAST(:at AS timestamptz[]),"
    " CAST(:code AS integer[]), CAST(:ms AS integer[]), CAST(:resp AS varchar[]),"
    " CAST(:err AS varchar[])) AS k(e, ep, at, code, ms, resp, err)"
    " ON k.e = f.event_id AND k.ep = f.endpoint_id)"
    " SELECT event_id, endpoint_id, fresh FROM f"
)
_PA = payment_attempts.c
_TRADE_NOS: Final = (
    sa.select(_PA.order_id, _PA.out_trade_no)
    .where(_PA.order_id.in_(sa.bindparam("ids", expanding=True)), _PA.replaced_by.is_(None))
    .order_by(_PA.order_id, _PA.created_at.desc(), _PA.id)
)
_SET_POSITION: Final = (
    sa.update(events)
    .where(E.id == sa.bindparam("row_id"))
    .values(position=sa.bindparam("pos"), public_id=sa.bindparam("pid"), body=sa.bindparam("b"))
)
_MOVE: Final = (
    sa.update(webhook_deliveries)
    .where(D.id == sa.bindparam("d_id"), D.leased_by == sa.bindparam("w"), pending(D.status))
    .values(
        status=sa.bindparam("st"),
        attempts=D.attempts + 1,
        next_attempt_at=sa.bindparam("nxt", type_=D.next_attempt_at.type),
        lease_until=None,
        leased_by=None,
        last_status=sa.bindparam("last", type_=D.last_status.type),
        updated_at=sa.bindparam("at", type_=D.updated_at.type),
    )
)
_NOW = sa.bindparam("now", type_=D.next_attempt_at.type)
_TEXTS = postgresql.ARRAY(sa.String)
_DUE = (
    pending(D.status),
    D.next_attempt_at <= _NOW,
    sa.or_(D.lease_until.is_(None), D.lease_until < _NOW),
    # (EXISTS, not endpoint_id IN (...): SQLite, without statistics, read the due rows by
    # endpoint through the order index for an IN, then sorted every pending row)
    sa.select(W.id).where(W.id == D.endpoint_id, W.disabled_at.is_(None)).exists(),
)
# PostgreSQL's pick: each enabled endpoint's due rows, in due order (ties by id), at most
# ``each`` per endpoint, read through ix_webhook_deliveries_due_by_endpoint and locked as
# read (SKIP LOCKED: another process's pick takes the next ones); then all of them in due
# order, so a pick is spread over the endpoints, and a disabled endpoint's rows are never
# read. Its cost follows the endpoints and the rows taken, not the backlog: a pick over all
# due rows (one index, then a sort) got slower as the backlog grew, and a plan kept from
# when the table was small read it whole (0.2-1.4 s per claim at 2,400 pending;
# docs/benchmarks.md, "Delivery processes"). Then the picked orders' earlier events
# (:class:`_Earlier`, a keyed query; two more only for orders that have any): a candidate
# whose order has an earlier event still owed to its endpoint waits. Lists go as arrays (one
# parameter each): a statement with a placeholder per item is a new, long text each time,
# never prepared.
_CLAIM_PICK: Final = sa.text(
    "SELECT d.id, d.endpoint_id, d.order_key, d.event_id FROM webhook_endpoints AS w"
    " CROSS JOIN LATERAL (SELECT x.id, x.endpoint_id, x.order_key, x.event_id,"
    " x.next_attempt_at FROM webhook_deliveries AS x WHERE x.endpoint_id = w.id"
    " AND x.status = 'pending' AND x.next_attempt_at <= :now"
    " AND (x.lease_until IS NULL OR x.lease_until < :now)"
    " ORDER BY x.next_attempt_at, x.id LIMIT :each FOR UPDATE SKIP LOCKED) AS d"
    " WHERE w.disabled_at IS NULL AND w.id != ALL(CAST(:full AS varchar[]))"
    " ORDER BY d.next_attempt_at, d.id"
).bindparams(sa.bindparam("now", type_=UtcDateTime))
_EARLIER = webhook_deliveries.alias("earlier")
_BLOCKED = (  # an earlier event of the same order still pending for the same endpoint
    sa.select(_EARLIER.c.id)
    .where(
        _EARLIER.c.endpoint_id == D.endpoint_id,
        _EARLIER.c.order_key == D.order_key,
        _EARLIER.c.event_id < D.event_id,
        pending(_EARLIER.c.status),
    )
    .exists()
)
# SQLite plans the check in one query well (through ix_webhook_deliveries_order_pending),
# and one statement costs it less than two (0.07 against 0.12 ms of database work per
# delivery).
_CLAIM_PICK_ONE: Final = (
    sa.select(D.id, D.endpoint_id)
    .where(*_DUE, D.endpoint_id.not_in(sa.bindparam("full", expanding=True)), ~_BLOCKED)
    .order_by(D.next_attempt_at, D.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
# PostgreSQL plans the outbox's statements for their actual arrays and the table's size at
# the time: a plan kept from when the table was small scanned it whole once per statement
# (and tested each row against every id given), a cost that grew with the backlog
_CUSTOM_PLANS: Final = sa.text("SET LOCAL plan_cache_mode = force_custom_plan")
_CLAIM_LEASE: Final = (
    sa.update(webhook_deliveries)
    .where(D.id.in_(sa.bindparam("ids", expanding=True)))
    .values(
        lease_until=sa.bindparam("until", type_=D.lease_until.type),
        leased_by=sa.bindparam("worker", type_=D.leased_by.type),
    )
)
_CLAIMED: Final = (
    sa.select(
        D.id,
        D.event_id,
        D.attempts,
        E.public_id,
        E.body,
        W.id.label("endpoint_id"),
        W.url,
        W.secret,
        W.previous_secret,
        W.previous_until,
    )
    .join(events, E.id == D.event_id)
    .join(webhook_endpoints, W.id == D.endpoint_id)
    .where(D.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(D.event_id)
)
_HELD: Final = sa.select(D.id).where(
    D.id.in_(sa.bindparam("ids", expanding=True)),
    D.leased_by == sa.bindparam("worker", type_=D.leased_by.type),
    pending(D.status),
)
# PostgreSQL: a pass's record and its lease each in one statement over arrays (unnest), not
# a locking read then an executemany (a round trip or more each): the deliveries still held
# move, every attempt is kept, the ids moved come back; the lease returns what it leased.
_PG_RECORD: Final = sa.text(
    "WITH moved AS (UPDATE webhook_deliveries AS d SET status = m.st,"
    " attempts = d.attempts + 1, next_attempt_at = m.nxt, lease_until = NULL,"
    " leased_by = NULL, last_status = m.last, updated_at = m.at"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:st AS varchar[]),"
    " CAST(:nxt AS timestamptz[]), CAST(:last AS integer[]), CAST(:at AS timestamptz[]))"
    " AS m(id, st, nxt, last, at)"
    " WHERE d.id = m.id AND d.id = ANY(CAST(:ids AS integer[]))"  # (the key: plans look it up)
    # "not finished" rather than = 'pending', which the planner could serve from a partial
    # index over pending rows (and did, with statistics from before a burst: every pending
    # row read for each record)
    f" AND d.leased_by = :worker AND d.status NOT IN ('{DELIVERED}', '{FAILED}', '{CANCELLED}')"
    " RETURNING d.id),"
    " kept AS (INSERT INTO webhook_attempts"
    " (delivery_id, attempted_at, status_code, latency_ms, response, error)"
    " SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:at AS timestamptz[]),"
    " CAST(:code AS integer[]), CAST(:ms AS integer[]), CAST(:resp AS varchar[]),"
    " CAST(:err AS varchar[])))"
    " SELECT id FROM moved"
)
_NO_NESTED_LOOP: Final = sa.text("SET LOCAL enable_nestloop = off")
_NESTED_LOOP: Final = sa.text("SET LOCAL enable_nestloop = on")
_PG_LEASE: Final = sa.text(
    "UPDATE webhook_deliveries AS d SET lease_until = :until, leased_by = :worker"
    " FROM events AS e, webhook_endpoints AS w"
    " WHERE d.id = ANY(CAST(:ids AS integer[])) AND e.id = d.event_id AND w.id = d.endpoint_id"
    " RETURNING d.id, d.event_id, d.attempts, e.public_id, e.body, w.id AS endpoint_id, w.url,"
    " w.secret, w.previous_secret, w.previous_until"
).columns(previous_until=UtcDateTime)
_INSERT_ATTEMPT: Final = sa.insert(webhook_attempts)
_INSERT_DELIVERY: Final = sa.insert(webhook_deliveries)
_ANY_DUE: Final = (
    sa.select(D.id)
    .where(
        pending(D.status),
        D.next_attempt_at <= sa.bindparam("now", type_=D.next_attempt_at.type),
    )
    .limit(1)
)


def new_event_id() -> str:
    return "evt_" + secrets.token_urlsafe(16)


def new_endpoint_id() -> str:
    return "we_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    event_types: tuple[str, ...] | None
    source: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    rotating_until: datetime | None  # the previous secret still signs until then


@dataclass(frozen=True)
class Due:
    """A leased delivery: what to send where, signed with which secrets."""

    delivery_id: int
    event_id: int
    public_id: str
    body: bytes
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    attempts: int  # attempts made before this one
    # PostgreSQL: taken into this worker batch (``delivery_id`` 0: no row yet)
    batch: int | None = None
    order_key: str | None = None


@dataclass(frozen=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response: str
    error: str | None


@dataclass(frozen=True)
class EndpointRoom:
    """How many more deliveries a worker may start per endpoint: ``limit`` in flight to one
    endpoint at once (None: no limit), ``busy`` how many are in flight now. Endpoints at
    their limit are left out of the claim's pick, so that the rows of a slow endpoint never
    fill the pick; the others are trimmed to their room as candidates are taken."""

    limit: int | None = None
    busy: Mapping[str, int] = field(default_factory=dict)

    def full(self) -> list[str]:
        if self.limit is None:
            return []
        return sorted(e for e, n in self.busy.items() if n >= self.limit)

    def take(self, candidates: Iterable[Any], most: int) -> list[int]:
        """The ids of ``candidates`` (rows with ``id`` and ``endpoint_id``) in their order,
        at most ``most``, none past its endpoint's room."""
        taken: dict[str, int] = {}
        ids: list[int] = []
        for c in candidates:
            if len(ids) >= most:
                break
            n = self.busy.get(c.endpoint_id, 0) + taken.get(c.endpoint_id, 0)
            if self.limit is not None and n >= self.limit:
                continue
            taken[c.endpoint_id] = taken.get(c.endpoint_id, 0) + 1
            ids.append(c.id)
        return ids


class _Lease(NamedTuple):
    """What a worker's publish may take into its batch: for ``worker``, ``seconds`` long, at
    most ``most`` deliveries within ``room``."""

    worker: str
    seconds: float
    most: int
    room: EndpointRoom


class _Published(NamedTuple):
    rows: int
    created: int
    batch: Batch | None = None


class _Candidate(NamedTuple):
    id: int  # (an index into the batch, for EndpointRoom.take)
    endpoint_id: str


class Batch(NamedTuple):
    """What a worker's publish took (PostgreSQL): ``ready`` may go now, ``waiting`` wait for
    an earlier event of their order that may still be without its row."""

    id: int
    ready: list[Due]
    waiting: list[Due]


class Held(NamedTuple):
    """Where a worker's waiting deliveries stand (:meth:`OutboxStore.cycle_sync`)."""

    ready: list[Due]  # free to go now
    rowed: list[Due]  # written as rows: a claim takes them in their order's turn
    waiting: list[Due]  # still waiting


_Signing = dict[str, tuple[str, ...]]  # endpoint id: the secrets that sign for it now


class Cycle(NamedTuple):
    """What one worker pass did (:meth:`OutboxStore.cycle_sync`)."""

    kept: list[bool]  # per outcome: False when the lease had been lost
    published: int
    claimed: list[Due]
    batch: Batch | None = None
    held: Held | None = None
    # of the endpoints asked for (Mine.endpoints): the enabled ones, each with the secrets
    # that sign for it now (one left out was turned off: deleted, or disabled by a 410)
    signing: _Signing | None = None


@dataclass(frozen=True)
class Mine:
    """What a worker holds of its batches, for its pass (PostgreSQL): open ones whose lease
    to renew (``batches``), those every pair of which now has its row (``close``), the deliveries
    waiting for an earlier event of their order, and how many new ones it may take
    (``take``: at most so many, within the room, besides those that must wait for an earlier
    event; None: no batch, every new delivery a row, claimed in the same pass), and the
    endpoints of its queued deliveries, whose state to read (``endpoints``: turned off, or
    their secrets rotated, since the deliveries were taken)."""

    batches: Sequence[int] = ()
    close: Sequence[int] = ()
    waiting: Sequence[Due] = ()
    take: tuple[int, EndpointRoom] | None = None
    endpoints: Sequence[str] = ()


class Outcome(NamedTuple):
    """What one attempt of a leased delivery came to, for :meth:`OutboxStore.record_many`."""

    due: Due
    attempt: Attempt
    next_at: datetime | None  # None and not delivered: give up
    delivered: bool
    disable: str | None = None


@dataclass(frozen=True)
class Delivery:
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    history: tuple[Attempt, ...]


@dataclass(frozen=True)
class ShopEvent:
    position: int
    id: str
    type: ShopEventType
    created: datetime
    body: str
    row_id: int
    order_id: str | None


def _endpoint(row: sa.Row[Any], now: datetime) -> Endpoint:
    until = row.previous_until if row.previous_until and row.previous_until > now else None
    types = tuple(row.event_types) if row.event_types is not None else None
    return Endpoint(row.id, row.url, types, row.source, row.created_at, row.disabled_at,
                    row.disabled_reason, until)  # fmt: skip


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class OutboxStore:
    """SQL for the outbox; ``run`` puts blocking calls where the order store puts its own
    (its database thread on SQLite), so writes from this process queue in one line."""

    def __init__(
        self, engine: sa.Engine, run: Callable[..., Any], clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self._run = run
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        # PostgreSQL takes a pass's record and its claim as two transactions at once (the
        # worker overlaps them); SQLite has one writer, so one transaction does both
        self.records_apart = self._postgres

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._run(fn, *args)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A write transaction (the write lock up front on SQLite; plans made for each
        statement's values on PostgreSQL, ``_CUSTOM_PLANS``)."""
        with self._writer.begin() as conn:
            if self._postgres:
                conn.execute(_CUSTOM_PLANS)
            yield conn

    # ---- publishing --------------------------------------------------------------------

    def publish_sync(self, limit: int = 500) -> int:
        """Publish up to ``limit`` unpublished rows; returns how many were published."""
        with self.engine.begin() as conn:  # a read first: no write lock when idle
            if conn.execute(_ANY_UNPUBLISHED).first() is None:
                return 0
        with self._write() as conn:
            return self._publish(conn, self._clock(), limit).rows

    def _publish(
        self, conn: sa.Connection, now: datetime, limit: int, lease: _Lease | None = None
    ) -> _Published:
        """Publish in ``conn`` (a write transaction): the rows published, the deliveries
        created and (PostgreSQL, with ``lease``) the batch of them the worker took, the
        others written as rows. A few statements whatever the number of rows: the rows, the
        last position, the endpoints, the orders and attempts their bodies show, then one
        statement (SQLite: an executemany) for the positions and one for the deliveries
        (PostgreSQL: rows and the batch; the orders' earlier events when taking)."""
        if self._postgres:
            conn.execute(_LOCK_PUBLISHER)
        rows = conn.execute(_UNPUBLISHED, {"limit": limit}).all()
        if not rows:
            return _Published(0, 0)
        position = int(rows[0].last)
        kinds = [shop_type(EventType(row.type)) for row in rows]
        endpoints: Sequence[Any] = ()
        if any(kind is not None for kind in kinds):
            endpoints = conn.execute(_ENABLED_ENDPOINTS).all()
        shown = [r for r, k in zip(rows, kinds, strict=True) if k is not None and _shows_order(k)]
        snapshots = _Snapshots(conn, shown)
        updates: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        bodies: dict[int, tuple[str, str]] = {}  # event row id: (public id, body)
        for row, kind in zip(rows, kinds, strict=True):
            position += 1
            public_id = body = None
            if kind is not None:
                public_id = new_event_id()
                body = _body(snapshots, public_id, kind, row)
                bodies[row.id] = (public_id, body)
                deliveries += [
                    _new_delivery(row.id, ep.id, row.order_id, now)
                    for ep in endpoints
                    if ep.event_types is None or kind.value in ep.event_types
                ]
            updates.append({"row_id": row.id, "pos": position, "pid": public_id, "b": body})
        if not self._postgres:
            conn.execute(_SET_POSITION, updates)
            if deliveries:
                conn.execute(_INSERT_DELIVERY, deliveries)
            return _Published(len(rows), len(deliveries))
        conn.execute(_PG_SET_POSITIONS, {
            "ids": [u["row_id"] for u in updates], "pos": [u["pos"] for u in updates],
            "pid": [u["pid"] for u in updates], "b": [u["b"] for u in updates],
        })  # fmt: skip
        if not deliveries:
            return _Published(len(rows), 0)
        taken = _Taken() if lease is None else self._take(conn, deliveries, lease)
        mine = taken.ready | taken.waiting
        rest = [d for n, d in enumerate(deliveries) if n not in mine]
        if rest:
            conn.execute(_PG_INSERT_DELIVERIES, {
                "now": now, "events": [d["event_id"] for d in rest],
                "endpoints": [d["endpoint_id"] for d in rest],
                "orders": [d["order_key"] for d in rest],
            })  # fmt: skip
        if lease is None or not (taken.ready or taken.waiting):
            return _Published(len(rows), len(deliveries))
        ours = sorted(mine)
        batch_id = conn.execute(_PG_NEW_BATCH, {
            "worker": lease.worker, "until": now + timedelta(seconds=lease.seconds),
            "first": min(deliveries[n]["event_id"] for n in ours), "now": now,
            "events": [deliveries[n]["event_id"] for n in ours],
            "endpoints": [deliveries[n]["endpoint_id"] for n in ours],
        }).scalar_one()  # fmt: skip
        by_id = {ep.id: ep for ep in endpoints}

        def due(n: int) -> Due:
            d = deliveries[n]
            public_id, body = bodies[d["event_id"]]
            ep = by_id[d["endpoint_id"]]
            return Due(0, d["event_id"], public_id, body.encode(), ep.id, ep.url,
                       _secrets(ep, now), 0, batch_id, d["order_key"])  # fmt: skip

        batch = Batch(batch_id, [due(n) for n in ours if n in taken.ready],
                      [due(n) for n in ours if n in taken.waiting])  # fmt: skip
        return _Published(len(rows), len(deliveries), batch)

    def _take(
        self, conn: sa.Connection, deliveries: Sequence[Mapping[str, Any]], lease: _Lease
    ) -> _Taken:
        """Which of the new ``deliveries`` (their indexes) the worker takes into its batch:
        in their order, within its room; ``waiting`` those whose order has an earlier event
        that may still be without its row (taken here, or in an open batch), left out those
        whose order has an earlier event pending as a row (they wait as rows, for a claim)."""
        taken = _Taken()
        earlier = _Earlier.read(conn, [(d["order_key"], d["event_id"]) for d in deliveries])
        here: dict[tuple[int, str], str] = {}  # this publish's (event, endpoint): how
        candidates: list[_Candidate] = []
        for n, d in enumerate(deliveries):
            pair = (d["event_id"], d["endpoint_id"])
            turn = earlier.turn(d["endpoint_id"], d["order_key"], d["event_id"], here)
            if turn == _ROW:
                here[pair] = _ROW
            elif turn == _WAIT:  # (taken even past ``most``: as a row it could go first)
                taken.waiting.add(n)
                here[pair] = _WAIT
            else:
                candidates.append(_Candidate(n, d["endpoint_id"]))
                here[pair] = _GO  # settled below: taken, or a row
        for n in lease.room.take(candidates, max(0, lease.most - len(taken.waiting))):
            taken.ready.add(n)
        for c in candidates:
            if c.id not in taken.ready:
                d = deliveries[c.id]
                here[(d["event_id"], d["endpoint_id"])] = _ROW
        return taken

    async def publish(self, limit: int = 500) -> int:
        published: int = await self._run(self.publish_sync, limit)
        return published

    # ---- delivering --------------------------------------------------------------------

    def claim_sync(
        self, worker: str, lease_seconds: float, limit: int, room: EndpointRoom | None = None
    ) -> list[Due]:
        now = self._clock()
        with self.engine.begin() as conn:  # a read first: no write lock when idle
            if conn.execute(_ANY_DUE, {"now": now}).first() is None:
                return []
        with self._write() as conn:
            return self._claim(conn, worker, lease_seconds, limit, now, room)

    def _claim(
        self,
        conn: sa.Connection,
        worker: str,
        lease_seconds: float,
        limit: int,
        now: datetime,
        room: EndpointRoom | None = None,
    ) -> list[Due]:
        # two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT): PostgreSQL may run
        # such a subquery more than once and lease more than ``limit`` rows. The rows picked
        # are locked (FOR UPDATE on PostgreSQL, the write lock on SQLite) until the commit.
        room = room or EndpointRoom()
        params = {"now": now, "full": room.full()}
        if not self._postgres:
            rows = conn.execute(_CLAIM_PICK_ONE, {**params, "limit": limit}).all()
            picked = room.take(rows, limit)
            return self._lease(conn, worker, lease_seconds, picked, now)
        each = min(limit, room.limit or limit)
        while True:  # more only where rows waiting for earlier ones took an endpoint's share
            candidates = conn.execute(_CLAIM_PICK, {**params, "each": each}).all()
            ready = self._not_waiting(conn, candidates)
            picked = room.take(ready, limit)
            if len(picked) >= limit or not _more_behind(candidates, ready, picked, each, room):
                break
            each *= 4
        return self._lease(conn, worker, lease_seconds, picked, now)

    def _lease(
        self, conn: sa.Connection, worker: str, lease_seconds: float, picked: list[int],
        now: datetime,
    ) -> list[Due]:  # fmt: skip
        if not picked:
            return []
        until = now + timedelta(seconds=lease_seconds)
        if self._postgres:
            leased = conn.execute(_PG_LEASE, {"ids": picked, "until": until, "worker": worker})
            rows = sorted(leased, key=lambda row: row.event_id)
        else:
            conn.execute(_CLAIM_LEASE, {"ids": picked, "until": until, "worker": worker})
            rows = list(conn.execute(_CLAIMED, {"ids": picked}))
        return [Due(row.id, row.event_id, row.public_id, row.body.encode(), row.endpoint_id,
                    row.url, _secrets(row, now), row.attempts) for row in rows]  # fmt: skip

    @staticmethod
    def _not_waiting(conn: sa.Connection, candidates: Sequence[Any]) -> list[Any]:
        """The ``candidates`` (PostgreSQL) whose order has no earlier event still owed to the
        same endpoint, in the order given: none pending as a row, and none in an open batch
        without its row (another worker's, queued or in flight; a row written when a
        stopping worker handed over its waiting deliveries would otherwise go first)."""
        earlier = _Earlier.read(conn, [(c.order_key, c.event_id) for c in candidates])
        return [
            c for c in candidates if earlier.turn(c.endpoint_id, c.order_key, c.event_id, {}) == _GO
        ]

    async def claim(
        self, worker: str, lease_seconds: float, limit: int, room: EndpointRoom | None = None
    ) -> list[Due]:
        claimed: list[Due] = await self._run(self.claim_sync, worker, lease_seconds, limit, room)
        return claimed

    def record_sync(
        self,
        due: Due,
        worker: str,
        attempt: Attempt,
        next_at: datetime | None,
        *,
        delivered: bool,
        disable: str | None = None,
    ) -> bool:
        """Keep the attempt and move the delivery (only while ``worker`` holds the lease):
        delivered, again at ``next_at``, or failed (``next_at`` None). ``disable`` turns
        the endpoint off with that reason (a 410). False when the lease was lost."""
        return self.record_many_sync(worker, [Outcome(due, attempt, next_at, delivered, disable)])[
            0
        ]

    def record_many_sync(
        self, worker: str, outcomes: Sequence[Outcome], close: Sequence[int] = ()
    ) -> list[bool]:
        """:meth:`record_sync` for several deliveries in one transaction; ``close``: the
        worker's batches every pair of which has its row once these are written."""
        with self._write() as conn:
            kept = self._record_many(conn, worker, outcomes)
            if close:
                conn.execute(_PG_CLOSE_BATCHES, {"worker": worker, "ids": list(close)})
            return kept

    async def record_many(
        self, worker: str, outcomes: Sequence[Outcome], close: Sequence[int] = ()
    ) -> list[bool]:
        kept: list[bool] = await self._run(self.record_many_sync, worker, outcomes, close)
        return kept

    def _record_many(
        self, conn: sa.Connection, worker: str, outcomes: Sequence[Outcome]
    ) -> list[bool]:
        """Keep every attempt; move the deliveries ``worker`` still holds (SQLite: one query
        finds them, one executemany moves them; PostgreSQL: one statement, ``_PG_RECORD``)."""
        if not outcomes:
            return []
        if self._postgres:
            return self._record_pg(conn, worker, outcomes)
        found = conn.execute(_HELD, {"ids": [o.due.delivery_id for o in outcomes],
                                          "worker": worker})  # fmt: skip
        held = set(found.scalars())
        moves = [
            {
                "d_id": due.delivery_id,
                "w": worker,
                "st": DELIVERED if delivered else PENDING if next_at is not None else FAILED,
                "nxt": next_at,
                "last": attempt.status_code,
                "at": attempt.attempted_at,
            }
            for due, attempt, next_at, delivered, _reason in outcomes
            if due.delivery_id in held
        ]
        if moves:
            conn.execute(_MOVE, moves)
        conn.execute(
            _INSERT_ATTEMPT,
            [
                {
                    "delivery_id": o.due.delivery_id,
                    "attempted_at": o.attempt.attempted_at,
                    "status_code": o.attempt.status_code,
                    "latency_ms": o.attempt.latency_ms,
                    "response": o.attempt.response[:256],
                    "error": o.attempt.error and o.attempt.error[:128],
                }
                for o in outcomes
            ],
        )
        _disable(conn, outcomes)
        return [o.due.delivery_id in held for o in outcomes]

    @staticmethod
    def _record_pg(conn: sa.Connection, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        """:meth:`_record_many` on PostgreSQL: one statement for the leased rows
        (``_PG_RECORD``), one for the first attempts of batches (``_PG_RECORD_FIRST``)."""
        first = [o for o in outcomes if o.due.batch is not None]
        kept: dict[tuple[int, str], bool] = {}
        if first:
            kept = _record_first(conn, first)
        rows = [o for o in outcomes if o.due.batch is None]
        held: set[int] = set()
        if rows:
            held = _record_rows(conn, worker, rows)
        _disable(conn, outcomes)
        return [
            kept.get((o.due.event_id, o.due.endpoint_id), False)
            if o.due.batch is not None
            else o.due.delivery_id in held
            for o in outcomes
        ]

    # ---- batches (PostgreSQL) ----------------------------------------------------------

    def release_sync(self, worker: str, waiting: Sequence[Due], batches: Sequence[int]) -> None:
        """A stopping worker hands over: its ``waiting`` deliveries become pending rows and
        its ``batches`` (every pair of which now has a row) are closed."""
        if not (waiting or batches):
            return
        with self._write() as conn:
            _write_rows(conn, waiting, self._clock())
            if batches:
                conn.execute(_PG_CLOSE_BATCHES, {"worker": worker, "ids": list(batches)})

    async def release(self, worker: str, waiting: Sequence[Due], batches: Sequence[int]) -> None:
        await self._run(self.release_sync, worker, waiting, batches)

    # ---- one worker pass ---------------------------------------------------------------

    def cycle_sync(
        self,
        worker: str,
        lease_seconds: float,
        claim_limit: int,
        outcomes: Sequence[Outcome] = (),
        limit: int = 500,
        changed: bool = False,
        look_for_due: bool = True,
        room: EndpointRoom | None = None,
        mine: Mine | None = None,
    ) -> Cycle:
        """A worker's pass in one write transaction: record ``outcomes``, publish up to
        ``limit`` rows, lease up to ``claim_limit`` due deliveries. With nothing to record
        and no change known (``changed``: this process wrote events), a read comes first,
        so an idle pass takes no write lock. A pass for a change with nothing to record
        leases only what it created unless ``look_for_due`` (the worker asks now and then,
        for retries coming due). On PostgreSQL the due rows are leased first, and the new
        deliveries are taken into a batch (``mine``: what the worker holds of its batches;
        :meth:`_publish_leasing`)."""
        now = self._clock()
        unpublished = due = True
        if changed and not outcomes:
            due = look_for_due
        busy = mine is not None and bool(mine.waiting or mine.close or mine.batches
                                         or mine.endpoints)  # fmt: skip
        if not outcomes and not changed and not busy:
            with self.engine.begin() as conn:
                unpublished, due, expired = conn.execute(
                    sa.select(_ANY_UNPUBLISHED.exists(), _ANY_DUE.exists(),
                              _ANY_EXPIRED.exists()), {"now": now}
                ).one()  # fmt: skip
            due = due or (expired and self._postgres)
            if not unpublished and not (due and claim_limit):
                return Cycle([], 0, [])
        with self._write() as conn:
            kept = self._record_many(conn, worker, outcomes)
            if self._postgres:
                return Cycle(kept, *self._publish_leasing(conn, worker, lease_seconds,
                                                          claim_limit, now, limit, room,
                                                          mine or Mine(),
                                                          unpublished=unpublished,
                                                          due=due))  # fmt: skip
            published = created = 0
            if unpublished:
                published, created, _ = self._publish(conn, now, limit)
            claimed: list[Due] = []
            if claim_limit > 0 and (due or created):
                claimed = self._claim(conn, worker, lease_seconds, claim_limit, now, room)
        return Cycle(kept, published, claimed)

    def _publish_leasing(
        self, conn: sa.Connection, worker: str, lease_seconds: float, claim_limit: int,
        now: datetime, limit: int, room: EndpointRoom | None, mine: Mine, *, unpublished: bool,
        due: bool,
    ) -> tuple[int, list[Due], Batch | None, Held | None, _Signing | None]:  # fmt: skip
        """PostgreSQL's pass after the record: close the worker's settled batches and renew
        the others; expand batches whose worker stopped renewing them; lease what was due
        (it goes first); see to the waiting deliveries; read the state of the endpoints
        asked for; publish, taking the new deliveries into a batch (a claim would pick and
        lease each again). Returns (rows published, leased, the batch, the waiting ones'
        turns, the endpoints' secrets)."""
        room = room or EndpointRoom()
        until = now + timedelta(seconds=lease_seconds)
        if mine.close:
            conn.execute(_PG_CLOSE_BATCHES, {"worker": worker, "ids": list(mine.close)})
        if mine.batches:
            conn.execute(_PG_RENEW_BATCHES, {"worker": worker, "until": until,
                                             "ids": list(mine.batches)})  # fmt: skip
        claimed: list[Due] = []
        if due:
            written = conn.execute(_PG_EXPAND, {"now": now}).rowcount
            if written:  # (rows are written once the transaction commits)
                log.warning("webhook batches of a worker that stopped renewing them: "
                            "%d deliveries to be written as pending rows", written)  # fmt: skip
            if claim_limit > 0:
                claimed = self._claim(conn, worker, lease_seconds, claim_limit, now, room)
        held = _see_to(conn, mine.waiting, now) if mine.waiting else None
        signing = None
        if mine.endpoints:
            found = conn.execute(_ENABLED_ENDPOINTS.where(W.id.in_(list(mine.endpoints))))
            signing = {ep.id: _secrets(ep, now) for ep in found}
        if not unpublished:
            return 0, claimed, None, held, signing
        if mine.take is not None:  # (the rows just leased count against the room)
            most, taking = mine.take
            busy = Counter(taking.busy)
            busy.update(d.endpoint_id for d in claimed)
            ask = _Lease(worker, lease_seconds, most - len(claimed),
                         EndpointRoom(taking.limit, dict(busy)))  # fmt: skip
            published = self._publish(conn, now, limit, ask)
            return published.rows, claimed, published.batch, held, signing
        published = self._publish(conn, now, limit)  # rows, and a claim for them
        more = claim_limit - len(claimed)
        if published.created and more > 0:
            busy = Counter(room.busy)
            busy.update(d.endpoint_id for d in claimed)
            claimed += self._claim(conn, worker, lease_seconds, more, now,
                                   EndpointRoom(room.limit, dict(busy)))  # fmt: skip
        return published.rows, claimed, None, held, signing

    async def cycle(
        self,
        worker: str,
        lease_seconds: float,
        claim_limit: int,
        outcomes: Sequence[Outcome] = (),
        limit: int = 500,
        changed: bool = False,
        look_for_due: bool = True,
        room: EndpointRoom | None = None,
        mine: Mine | None = None,
    ) -> Cycle:
        done: Cycle = await self._run(self.cycle_sync, worker, lease_seconds, claim_limit,
                                      outcomes, limit, changed, look_for_due, room,
                                      mine)  # fmt: skip
        return done

    async def record(
        self,
        due: Due,
        worker: str,
        attempt: Attempt,
        next_at: datetime | None,
        *,
        delivered: bool,
        disable: str | None = None,
    ) -> bool:
        def call() -> bool:
            return self.record_sync(
                due, worker, attempt, next_at, delivered=delivered, disable=disable
            )

        moved: bool = await self._run(call)
        return moved

    # ---- endpoints ---------------------------------------------------------------------

    def configure_settings_endpoint_sync(
        self, url: str | None, secret: str | None, types: Sequence[str] | None
    ) -> None:
        """Make the endpoint of the settings match them (or turn it off when unset)."""
        now = self._clock()
        with self._writer.begin() as conn:
            row = conn.execute(sa.select(webhook_endpoints).where(W.id == SETTINGS_ENDPOINT))
            current = row.first()
            if url is None or secret is None:
                if current is not None and current.disabled_at is None:
                    conn.execute(
                        sa.update(webhook_endpoints)
                        .where(W.id == SETTINGS_ENDPOINT)
                        .values(disabled_at=now, disabled_reason="not configured")
                    )
                return
            values = {
                "url": url,
                "secret": secret,
                "event_types": list(types) if types is not None else None,
                "disabled_at": None,
                "disabled_reason": None,
            }
            if current is None:
                conn.execute(
                    sa.insert(webhook_endpoints).values(
                        id=SETTINGS_ENDPOINT, source="settings", created_at=now, **values
                    )
                )
            elif (current.url, current.secret, current.event_types, current.disabled_at) != (
                url, secret, values["event_types"], None
            ):  # fmt: skip
                conn.execute(
                    sa.update(webhook_endpoints).where(W.id == SETTINGS_ENDPOINT).values(**values)
                )

    def create_endpoint_sync(self, url: str, secret: str, types: Sequence[str] | None) -> Endpoint:
        now = self._clock()
        ident = new_endpoint_id()
        with self._writer.begin() as conn:
            conn.execute(
                sa.insert(webhook_endpoints).values(
                    id=ident,
                    url=url,
                    secret=secret,
                    source="api",
                    created_at=now,
                    event_types=list(types) if types is not None else None,
                )
            )
            row = conn.execute(sa.select(webhook_endpoints).where(W.id == ident)).one()
        return _endpoint(row, now)

    def endpoints_sync(self) -> list[Endpoint]:
        now = self._clock()
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(webhook_endpoints)
                .where(sa.or_(W.disabled_reason.is_(None), W.disabled_reason != "deleted"))
                .order_by(W.created_at, W.id)
            ).all()
        return [_endpoint(row, now) for row in rows]

    def endpoint_sync(self, endpoint_id: str) -> Endpoint:
        now = self._clock()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(webhook_endpoints).where(W.id == endpoint_id, W.source == "api")
            ).first()
        if row is None or row.disabled_reason == "deleted":
            raise NotFoundError("no such webhook endpoint")
        return _endpoint(row, now)

    def delete_endpoint_sync(self, endpoint_id: str) -> None:
        """Turn an API endpoint off for good and cancel what it still had to receive."""
        now = self._clock()
        with self._writer.begin() as conn:
            gone = conn.execute(
                sa.update(webhook_endpoints)
                .where(
                    W.id == endpoint_id,
                    W.source == "api",
                    sa.or_(W.disabled_reason.is_(None), W.disabled_reason != "deleted"),
                )
                .values(disabled_at=now, disabled_reason="deleted")
            ).rowcount
            if gone != 1:
                raise NotFoundError("no such webhook endpoint")
            conn.execute(
                sa.update(webhook_deliveries)
                .where(D.endpoint_id == endpoint_id, pending(D.status))
                .values(status=CANCELLED, updated_at=now, lease_until=None, leased_by=None)
            )

    def rotate_secret_sync(self, endpoint_id: str, secret: str, grace: timedelta) -> Endpoint:
        """The new secret signs from now on; the old one also signs for ``grace``."""
        now = self._clock()
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.select(webhook_endpoints).where(W.id == endpoint_id, W.source == "api")
            ).first()
            if row is None or row.disabled_reason == "deleted":
                raise NotFoundError("no such webhook endpoint")
            conn.execute(
                sa.update(webhook_endpoints)
                .where(W.id == endpoint_id)
                .values(secret=secret, previous_secret=row.secret, previous_until=now + grace)
            )
            row = conn.execute(sa.select(webhook_endpoints).where(W.id == endpoint_id)).one()
        return _endpoint(row, now)

    # ---- the events API ----------------------------------------------------------------

    def position_of_sync(self, public_id: str) -> int:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(E.position).where(E.public_id == public_id)).first()
        if found is None:
            raise NotFoundError("no such event")
        return int(found.position)

    def list_events_sync(
        self, after: int, types: Collection[ShopEventType] | None, limit: int
    ) -> list[ShopEvent]:
        stored = [STORED_FOR[t].value for t in types] if types else [k.value for k in SHOP_FACING]
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(events)
                .where(E.position > after, E.public_id.is_not(None), E.type.in_(stored))
                .order_by(E.position)
                .limit(limit)
            ).all()
        return [_shop_event(row) for row in rows]

    def event_sync(self, public_id: str) -> tuple[ShopEvent, list[Delivery]]:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(events).where(E.public_id == public_id)).first()
            if row is None:
                raise NotFoundError("no such event")
            held: Sequence[Any] = ()  # (before the rows: PG_HELD_OF)
            if self._postgres:
                held = conn.execute(PG_HELD_OF, {"ids": [row.id], "last": row.id}).all()
            deliveries = conn.execute(
                sa.select(webhook_deliveries).where(D.event_id == row.id).order_by(D.id)
            ).all()
            history: dict[int, list[Attempt]] = {d.id: [] for d in deliveries}
            if history:
                A = webhook_attempts.c
                for a in conn.execute(
                    sa.select(webhook_attempts)
                    .where(A.delivery_id.in_(list(history)))
                    .order_by(A.id)
                ):
                    history[a.delivery_id].append(
                        Attempt(a.attempted_at, a.status_code, a.latency_ms, a.response, a.error)
                    )
        found = [
            Delivery(d.endpoint_id, d.status, d.attempts, d.next_attempt_at, tuple(history[d.id]))
            for d in deliveries
        ]
        rowed = {d.endpoint_id for d in deliveries}
        found += [  # taken by a worker, no attempt recorded yet
            Delivery(h.endpoint_id, PENDING, 0, h.created_at, ())
            for h in held
            if h.endpoint_id not in rowed
        ]
        return _shop_event(row), found

    def resend_sync(self, public_id: str) -> int:
        """Deliver the event again to every enabled endpoint that wants it (pending from
        now, the schedule from its start); returns how many deliveries were queued."""
        now = self._clock()
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.select(E.id, E.order_id, E.type).where(E.public_id == public_id)
            ).first()
            if row is None:
                raise NotFoundError("no such event")
            kind = shop_type(EventType(row.type))
            assert kind is not None
            endpoints = conn.execute(
                sa.select(W.id, W.event_types).where(W.disabled_at.is_(None))
            ).all()
            queued = 0
            for ep in endpoints:
                if ep.event_types is not None and kind.value not in ep.event_types:
                    continue
                reset = conn.execute(
                    sa.update(webhook_deliveries)
                    .where(D.event_id == row.id, D.endpoint_id == ep.id)
                    .values(
                        status=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        updated_at=now,
                        lease_until=None,
                        leased_by=None,
                    )
                ).rowcount
                if reset == 0:
                    conn.execute(
                        sa.insert(webhook_deliveries).values(
                            _new_delivery(row.id, ep.id, row.order_id, now)
                        )
                    )
                queued += 1
        return queued

    def deliveries_sync(self) -> list[tuple[str, str, str, int]]:
        """(event public id, endpoint id, status, attempts) of every delivery (tests)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(E.public_id, D.endpoint_id, D.status, D.attempts)
                .join(events, E.id == D.event_id)
                .order_by(D.id)
            ).all()
        return [(r.public_id, r.endpoint_id, r.status, r.attempts) for r in rows]


_GO: Final = "go"
_WAIT: Final = "wait"
_ROW: Final = "row"


@dataclass
class _Taken:
    ready: set[int] = field(default_factory=set)
    waiting: set[int] = field(default_factory=set)


@dataclass
class _Earlier:
    """The published events of some orders before given events, and where each of their
    deliveries stands: a row (its status), in an open batch, or neither (not owed)."""

    events: dict[str, list[int]] = field(default_factory=dict)  # order: earlier event ids
    rows: dict[tuple[int, str], str] = field(default_factory=dict)
    batched: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def read(cls, conn: sa.Connection, pairs: Iterable[tuple[str | None, int]]) -> _Earlier:
        """For each order of ``pairs`` (order, event id), its events before the latest one
        given (one keyed query; two more only when an order has any)."""
        last: dict[str, int] = {}
        for order, event in pairs:
            if order is not None:
                last[order] = max(last.get(order, 0), event)
        found = cls()
        if not last:
            return found
        for r in conn.execute(_PG_EARLIER, {"orders": list(last), "before": list(last.values())}):
            if r.ids:
                found.events[r.order_id] = [int(i) for i in r.ids]
        ids = sorted({e for events in found.events.values() for e in events})
        if ids:
            # The batches first, then the rows: each statement sees its own snapshot, and a
            # pair leaves a batch only in the transaction that writes its row. Read the
            # other way round, a record committing between the two reads (a failed first
            # attempt, its row pending for a retry, the batch closed) left the pair in
            # neither, and the later event went first.
            batched = conn.execute(_PG_IN_BATCHES, {"ids": ids, "last": ids[-1]})
            found.batched = {(int(r.event_id), r.endpoint_id) for r in batched}
            found.rows = {(int(r.event_id), r.endpoint_id): r.status
                          for r in conn.execute(_PG_ROWS_OF, {"ids": ids})}  # fmt: skip
        return found

    def turn(
        self, endpoint: str, order: str | None, event: int, here: Mapping[tuple[int, str], str]
    ) -> str:
        """Whether a delivery of ``event`` to ``endpoint`` may go (``_GO``), must wait for an
        earlier event of its order still without a row (``_WAIT``: in a batch, or taken in
        this publish), or wait as a row behind one pending as a row (``_ROW``). ``here``: the
        turns given in this publish so far."""
        if order is None:
            return _GO
        verdict = _GO
        for earlier in self.events.get(order, ()):
            if earlier >= event:
                continue
            pair = (earlier, endpoint)
            now = here.get(pair)
            if now is not None:
                if now != _ROW:
                    return _WAIT
                verdict = _ROW
            elif pair in self.rows:
                if self.rows[pair] == PENDING:
                    verdict = _ROW
            elif pair in self.batched:
                return _WAIT
        return verdict


def _more_behind(
    candidates: Sequence[Any], ready: Sequence[Any], picked: Sequence[int], each: int,
    room: EndpointRoom,
) -> bool:  # fmt: skip
    """Whether a wider pick could start more: some endpoint gave its whole share (``each``
    rows, so it may have more), some of them wait for earlier events of their orders, and
    it has room left. (Not when the room alone kept the pick short: reading further would
    only read the backlog.)"""
    shown = Counter(c.endpoint_id for c in candidates)
    waiting = shown - Counter(c.endpoint_id for c in ready)
    chosen = set(picked)
    taken = Counter(c.endpoint_id for c in candidates if c.id in chosen)
    return any(
        shown[e] >= each
        and waiting[e] > 0
        and (room.limit is None or room.busy.get(e, 0) + taken[e] < room.limit)
        for e in shown
    )


def _secrets(endpoint: Any, now: datetime) -> tuple[str, ...]:
    """The secrets that sign for ``endpoint`` now: its own, and its previous one until the
    rotation's grace period ends."""
    previous = endpoint.previous_secret
    if previous and endpoint.previous_until and endpoint.previous_until > now:
        return (endpoint.secret, previous)
    return (endpoint.secret,)


def _disable(conn: sa.Connection, outcomes: Sequence[Outcome]) -> None:
    """Turn off the endpoints an outcome disables (a 410)."""
    for o in outcomes:
        if o.disable is not None:
            conn.execute(
                sa.update(webhook_endpoints)
                .where(W.id == o.due.endpoint_id, W.disabled_at.is_(None))
                .values(disabled_at=o.attempt.attempted_at, disabled_reason=o.disable[:64])
            )


def _new_delivery(
    event_id: int, endpoint_id: str, order_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "order_key": order_id,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _shop_event(row: sa.Row[Any]) -> ShopEvent:
    kind = shop_type(EventType(row.type))
    assert kind is not None
    assert row.public_id is not None
    return ShopEvent(row.position, row.public_id, kind, row.created_at, row.body, row.id,
                     row.order_id)  # fmt: skip


def _shows_order(kind: ShopEventType) -> bool:
    """Whether the event's ``data`` is its order (else its refund or the alert)."""
    return kind not in (
        ShopEventType.REFUND_SUCCEEDED, ShopEventType.REFUND_FAILED, ShopEventType.ALERT_RAISED
    )  # fmt: skip


class _Snapshots:
    """The current attempts' ``out_trade_no`` of the orders whose events lack it (one query
    for the whole batch; the orders themselves come with the rows)."""

    def __init__(self, conn: sa.Connection, rows: Sequence[Any]) -> None:
        self.trade_nos: dict[str, str] = {}
        lacking = sorted({
            row.order_id for row in rows
            if row.order_id is not None and not isinstance(row.data.get("out_trade_no"), str)
        })  # fmt: skip
        if lacking:
            for order_id, out_trade_no in conn.execute(_TRADE_NOS, {"ids": lacking}):
                self.trade_nos.setdefault(order_id, out_trade_no)  # the latest per order

    def order(self, row: Any, data: dict[str, Any]) -> dict[str, Any]:
        out_trade_no = data.get("out_trade_no")
        if not isinstance(out_trade_no, str):
            out_trade_no = self.trade_nos.get(row.order_id)
        snapshot: dict[str, Any] = {
            "id": row.order_id,
            "status": row.status,
            "amount": row.amount,
            "currency": row.currency,
            "description": row.description,
            "out_trade_no": out_trade_no,
            "refunded_amount": int(data.get("refunded_amount", 0)),
            "created_at": _iso(row.order_created_at),
            "updated_at": _iso(row.created_at),
        }
        if isinstance(data.get("transaction_id"), str):
            snapshot["transaction_id"] = data["transaction_id"]
        return snapshot


def _body(snapshots: _Snapshots, public_id: str, kind: ShopEventType, row: Any) -> str:
    """The webhook body: ``{"id", "type", "created", "data"}`` with the resource as the shop
    API shows it at the time of the event."""
    data: dict[str, Any] = dict(row.data)
    if _shows_order(kind):
        resource = snapshots.order(row, data)
    elif kind is ShopEventType.ALERT_RAISED:
        resource = {"order_id": row.order_id, **data}
    else:  # refund.succeeded, refund.failed: the refund as stored
        resource = data
    body = {"id": public_id, "type": kind.value, "created": _iso(row.created_at), "data": resource}
    return _JSON.encode(body)


def _record_rows(conn: sa.Connection, worker: str, outcomes: Sequence[Outcome]) -> set[int]:
    """The leased rows' part of :meth:`OutboxStore._record_pg`; the ids still held."""
    names = ("ids", "st", "nxt", "last", "at", "code", "ms", "resp", "err")
    params: dict[str, Any] = {name: [] for name in names}
    params["worker"] = worker
    for due, attempt, next_at, delivered, _disable_reason in outcomes:
        params["ids"].append(due.delivery_id)
        params["st"].append(DELIVERED if delivered else PENDING if next_at is not None else FAILED)
        params["nxt"].append(next_at)
        params["last"].append(attempt.status_code)
        params["at"].append(attempt.attempted_at)
        params["code"].append(attempt.status_code)
        params["ms"].append(attempt.latency_ms)
        params["resp"].append(attempt.response[:256])
        params["err"].append(attempt.error and attempt.error[:128])
    # a hash join of the deliveries and the arrays: estimating few held rows (statistics
    # from before a burst), the planner chose a nested loop that read the arrays once
    # per delivery (25 ms for 256)
    conn.execute(_NO_NESTED_LOOP)
    held = set(conn.execute(_PG_RECORD, params).scalars())
    conn.execute(_NESTED_LOOP)
    return held


def _record_first(conn: sa.Connection, outcomes: Sequence[Outcome]) -> dict[tuple[int, str], bool]:
    """Batches' first attempts (PostgreSQL): each delivery's row written as its attempt left
    it, with the attempt; per (event, endpoint), whether the row is new (False: another
    worker had written it, after this batch's lease ran out, or a resend)."""
    last = {(o.due.event_id, o.due.endpoint_id): o for o in outcomes}  # (one per pair)
    names = ("events", "endpoints", "orders", "st", "nxt", "at", "code", "ms", "resp", "err")
    params: dict[str, list[Any]] = {name: [] for name in names}
    for due, attempt, next_at, delivered, _reason in last.values():
        params["events"].append(due.event_id)
        params["endpoints"].append(due.endpoint_id)
        params["orders"].append(due.order_key)
        params["st"].append(DELIVERED if delivered else PENDING if next_at is not None else FAILED)
        params["nxt"].append(None if delivered else next_at)
        params["at"].append(attempt.attempted_at)
        params["code"].append(attempt.status_code)
        params["ms"].append(attempt.latency_ms)
        params["resp"].append(attempt.response[:256])
        params["err"].append(attempt.error and attempt.error[:128])
    return {(int(r.event_id), r.endpoint_id): bool(r.fresh)
            for r in conn.execute(_PG_RECORD_FIRST, params)}  # fmt: skip


def _write_rows(conn: sa.Connection, waiting: Sequence[Due], now: datetime) -> None:
    """Pending rows (cancelled for a deleted endpoint) for taken deliveries that wait."""
    if waiting:
        conn.execute(_PG_INSERT_DELIVERIES, {
            "now": now, "events": [d.event_id for d in waiting],
            "endpoints": [d.endpoint_id for d in waiting],
            "orders": [d.order_key for d in waiting],
        })  # fmt: skip


def _see_to(conn: sa.Connection, waiting: Sequence[Due], now: datetime) -> Held:
    """Where a worker's waiting deliveries stand now: free to go, still waiting, or to wait
    as rows (behind a row pending, or for an endpoint turned off meanwhile), written here."""
    earlier = _Earlier.read(conn, [(d.order_key, d.event_id) for d in waiting])
    enabled = set(conn.execute(_PG_ENABLED, {"ids": sorted({d.endpoint_id for d in waiting})})
                  .scalars())  # fmt: skip
    held = Held([], [], [])
    for d in sorted(waiting, key=lambda d: d.event_id):
        turn = earlier.turn(d.endpoint_id, d.order_key, d.event_id, {})
        if d.endpoint_id not in enabled:
            turn = _ROW
        {_GO: held.ready, _WAIT: held.waiting, _ROW: held.rowed}[turn].append(d)
    _write_rows(conn, held.rowed, now)
    return held
