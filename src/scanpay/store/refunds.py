"""``SqlRefundStore``: :class:`SqlStore` plus refunds (the domain's ``RefundStore``).

The ``refunds`` table (Alembic revision 0002). A refund is inserted only after the
idempotency key, the order's status and the amount still refundable are checked in the same
write transaction (the attempt row is locked first on PostgreSQL; SQLite write transactions
are ``BEGIN IMMEDIATE``), so two concurrent refunds can never exceed the payment. A refund
turning SUCCESS moves the order (``partially_refunded`` / ``refunded``, per the state machine)
and writes the order's event in the same transaction as the refund row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from scanpay.domain import machine
from scanpay.domain.machine import Trigger
from scanpay.domain.model import EventType, Order, OrderStatus
from scanpay.domain.reconciler import DueRefund
from scanpay.domain.refunds import RELEASED, PlacedRefund, Refund, RefundStatus
from scanpay.errors import ConflictError, NotFoundError, ValidationError
from scanpay.store.sql import SqlStore
from scanpay.store.tables import UtcDateTime, events, metadata, orders, payment_attempts

refunds: Final = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column(
        "attempt_id",
        sa.String(40),
        sa.ForeignKey("payment_attempts.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("out_trade_no", sa.String(32), nullable=False),
    sa.Column("out_refund_no", sa.String(64), nullable=False, unique=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.String(320), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("settles_order", sa.Boolean, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("refund_id", sa.String(64), nullable=True),
    sa.Column("failure", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # 0005: the reconciler's schedule and lease for refunds not settled yet
    sa.Column("next_query_at", UtcDateTime, nullable=True),
    sa.Column("query_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("leased_by", sa.String(64), nullable=True),
    sa.Index("ix_refunds_status", "status"),
)

REFUNDABLE: Final = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})
# A refund reaching a final status writes its own event in the same transaction.
_OUTCOME_EVENT: Final = {
    RefundStatus.SUCCESS: EventType.REFUND_SUCCEEDED,
    RefundStatus.CLOSED: EventType.REFUND_FAILED,
    RefundStatus.FAILED: EventType.REFUND_FAILED,
}
UNSETTLED: Final = (RefundStatus.SUBMITTING, RefundStatus.PROCESSING)  # the reconciler asks


def _refund(row: sa.Row[Any]) -> Refund:
    m = row._mapping
    return Refund(
        id=m["id"],
        order_id=m["order_id"],
        attempt_id=m["attempt_id"],
        out_trade_no=m["out_trade_no"],
        out_refund_no=m["out_refund_no"],
        amount=m["amount"],
        total=m["total"],
        currency=m["currency"],
        reason=m["reason"],
        status=RefundStatus(m["status"]),
        settles_order=bool(m["settles_order"]),
        fingerprint=m["fingerprint"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        idempotency_key=m["idempotency_key"],
        refund_id=m["refund_id"],
        failure=m["failure"],
    )


def refund_snapshot(refund: Refund) -> dict[str, Any]:
    """The refund as the shop API shows it (JSON values), kept in its outcome event."""
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "out_trade_no": refund.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
        "status": refund.status.value,
        "failure": refund.failure,
        "created_at": refund.created_at.isoformat(),
        "updated_at": refund.updated_at.isoformat(),
    }


def _sum(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> int:
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount), 0)).where(*where)
    )
    return int(total.scalar_one())


class SqlRefundStore(SqlStore):
    """Orders, attempts, events and refunds in one SQL database."""

    # ---- reads -------------------------------------------------------------------------

    def paid_out_trade_no_sync(self, order_id: str) -> str | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(events.c.data)
                .where(events.c.order_id == order_id, events.c.type == EventType.PAID.value)
                .order_by(events.c.seq)
                .limit(1)
            ).first()
        if row is None:
            return None
        value = dict(row.data).get("out_trade_no")
        return value if isinstance(value, str) else None

    async def paid_out_trade_no(self, order_id: str) -> str | None:
        return await self._run(self.paid_out_trade_no_sync, order_id)

    def _find(self, *where: sa.ColumnElement[bool]) -> Refund | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(refunds).where(*where)).first()
        return None if row is None else _refund(row)

    async def find_refund_by_key(self, key: str) -> Refund | None:
        return await self._run(self._find, refunds.c.idempotency_key == key)

    def find_refund_sync(self, out_refund_no: str) -> Refund | None:
        return self._find(refunds.c.out_refund_no == out_refund_no)

    async def find_refund(self, out_refund_no: str) -> Refund | None:
        return await self._run(self.find_refund_sync, out_refund_no)

    def refunds_for_order_sync(self, order_id: str) -> list[Refund]:
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(refunds)
                .where(refunds.c.order_id == order_id)
                .order_by(refunds.c.created_at.desc(), refunds.c.id)
            ).all()
        return [_refund(row) for row in rows]

    async def refunds_for_order(self, order_id: str) -> list[Refund]:
        return await self._run(self.refunds_for_order_sync, order_id)

    def refunded_amount_sync(self, order_id: str) -> int:
        """Money refunded (SUCCESS) against the order's payment."""
        with self.engine.begin() as conn:
            return _sum(
                conn,
                refunds.c.order_id == order_id,
                refunds.c.settles_order.is_(True),
                refunds.c.status == RefundStatus.SUCCESS.value,
            )

    async def refunded_amount(self, order_id: str) -> int:
        return await self._run(self.refunded_amount_sync, order_id)

    def list_orders_sync(
        self, status: OrderStatus | None, limit: int, before: tuple[datetime, str] | None
    ) -> list[Order]:
        """Orders newest first (``created_at``, then ``id``), after the keyset ``before``."""
        query = sa.select(orders)
        if status is not None:
            query = query.where(orders.c.status == status.value)
        if before is not None:
            created, order_id = before
            query = query.where(
                sa.or_(
                    orders.c.created_at < created,
                    sa.and_(orders.c.created_at == created, orders.c.id < order_id),
                )
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        with self.engine.begin() as conn:
            return [self._get_order(conn, row.id) for row in conn.execute(query).all()]

    async def list_orders(
        self, status: OrderStatus | None, limit: int, before: tuple[datetime, str] | None
    ) -> list[Order]:
        return await self._run(self.list_orders_sync, status, limit, before)

    # ---- writes ------------------------------------------------------------------------

    def create_refund_sync(self, refund: Refund) -> PlacedRefund:
        try:
            with self._writer.begin() as conn:
                replay = self._refund_replay(conn, refund)
                if replay is not None:
                    return replay
                conn.execute(
                    sa.select(payment_attempts.c.id)
                    .where(payment_attempts.c.id == refund.attempt_id)
                    .with_for_update()
                )
                if refund.settles_order:
                    status = conn.execute(
                        sa.select(orders.c.status).where(orders.c.id == refund.order_id)
                    ).scalar_one_or_none()
                    if status is None:
                        raise NotFoundError("no such order")
                    if OrderStatus(status) not in REFUNDABLE:
                        raise ConflictError(f"an order that is {status} cannot be refunded",
                                            code="ORDER_NOT_PAID")  # fmt: skip
                held = _sum(
                    conn,
                    refunds.c.attempt_id == refund.attempt_id,
                    refunds.c.status.not_in([s.value for s in RELEASED]),
                )
                if held + refund.amount > refund.total:
                    raise ValidationError(
                        f"at most {refund.total - held} fen of this payment can still be refunded",
                        code="REFUND_EXCEEDS_PAYMENT",
                    )
                conn.execute(sa.insert(refunds).values(**_values(refund)))
        except IntegrityError:
            with self.engine.begin() as conn:  # lost a race for the same key
                replay = self._refund_replay(conn, refund)
            if replay is None:
                raise
            return replay
        return PlacedRefund(refund, created=True)

    def _refund_replay(self, conn: sa.Connection, refund: Refund) -> PlacedRefund | None:
        if refund.idempotency_key is None:
            return None
        row = conn.execute(
            sa.select(refunds).where(refunds.c.idempotency_key == refund.idempotency_key)
        ).first()
        if row is None:
            return None
        stored = _refund(row)
        if stored.fingerprint != refund.fingerprint:
            raise ConflictError("this Idempotency-Key was used with a different request",
                                code="IDEMPOTENCY_KEY_REUSED")  # fmt: skip
        return PlacedRefund(stored, created=False)

    async def create_refund(self, refund: Refund) -> PlacedRefund:
        return await self._run(self.create_refund_sync, refund)

    def move_refund_sync(
        self,
        refund_id: str,
        expected: RefundStatus,
        to: RefundStatus,
        wechat_refund_id: str | None = None,
        failure: str | None = None,
    ) -> Refund | None:
        now = self._clock()
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if wechat_refund_id:
            values["refund_id"] = wechat_refund_id[:64]
        if failure:
            values["failure"] = failure[:64]
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.update(refunds)
                .where(refunds.c.id == refund_id, refunds.c.status == expected.value)
                .values(**values)
                .returning(*refunds.c)
            ).first()
            if row is None:
                return None
            moved = _refund(row)
            outcome = _OUTCOME_EVENT.get(to)
            if outcome is not None:  # the shop's refund.succeeded / refund.failed (issue 11)
                self._append_event(conn, moved.order_id, outcome, refund_snapshot(moved))
            if to is RefundStatus.SUCCESS and moved.settles_order:
                self._settle_order(conn, moved)
            return moved

    def _settle_order(self, conn: sa.Connection, refund: Refund) -> None:
        """The order's side of a successful refund: its transition and event row."""
        status = conn.execute(
            sa.select(orders.c.status).where(orders.c.id == refund.order_id).with_for_update()
        ).scalar_one()
        current = OrderStatus(status)
        refunded = _sum(
            conn,
            refunds.c.attempt_id == refund.attempt_id,
            refunds.c.status == RefundStatus.SUCCESS.value,
        )
        trigger = Trigger.REFUND_FULL if refunded >= refund.total else Trigger.REFUND_PARTIAL
        step = machine.step(current, trigger)
        data = {
            "out_refund_no": refund.out_refund_no,
            "amount": refund.amount,
            "refunded_amount": refunded,
            "from": current.value,
            "trigger": trigger.value,
        }
        target = step.to_status
        kind = machine.EVENT_FOR[target] if target is not None else EventType.PARTIALLY_REFUNDED
        event = self._append_event(
            conn, refund.order_id, kind, data, new_status=target, expected=current
        )
        if event is None:  # the order row is locked (or the write lock held): cannot happen
            raise ConflictError("order changed during a refund")

    async def move_refund(
        self,
        refund_id: str,
        expected: RefundStatus,
        to: RefundStatus,
        *,
        wechat_refund_id: str | None = None,
        failure: str | None = None,
    ) -> Refund | None:
        return await self._run(
            self.move_refund_sync, refund_id, expected, to, wechat_refund_id, failure
        )

    # ---- the reconciler's refund schedule ----------------------------------------------

    def claim_due_refunds_sync(
        self, now: datetime, worker: str, lease_seconds: float, limit: int, first_delay: float
    ) -> list[DueRefund]:
        """Lease up to ``limit`` refunds still submitting/processing whose next look is due
        (never looked at: ``first_delay`` seconds after their last change). One statement,
        as for attempts (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
        r = refunds.c
        due = sa.and_(
            r.status.in_([s.value for s in UNSETTLED]),
            sa.or_(
                sa.and_(
                    r.next_query_at.is_(None), r.updated_at <= now - timedelta(seconds=first_delay)
                ),
                r.next_query_at <= now,
            ),
            sa.or_(r.lease_until.is_(None), r.lease_until < now),
        )
        pick = (
            sa.select(r.id)
            .where(due)
            .order_by(r.updated_at, r.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        until = now + timedelta(seconds=lease_seconds)
        with self._writer.begin() as conn:
            rows = conn.execute(
                sa.update(refunds)
                .where(r.id.in_(pick), due)
                .values(lease_until=until, leased_by=worker)
                .returning(r.id, r.out_refund_no, r.query_count)
            ).all()
        return sorted(DueRefund(row.id, row.out_refund_no, row.query_count) for row in rows)

    async def claim_due_refunds(
        self, now: datetime, worker: str, lease_seconds: float, limit: int, first_delay: float
    ) -> list[DueRefund]:
        return await self._run(
            self.claim_due_refunds_sync, now, worker, lease_seconds, limit, first_delay
        )

    def release_refund_sync(self, refund_id: str, worker: str, next_query_at: datetime) -> bool:
        """Give the lease back, count the look, store the next one (ignored once settled)."""
        with self._writer.begin() as conn:
            result = conn.execute(
                sa.update(refunds)
                .where(refunds.c.id == refund_id, refunds.c.leased_by == worker)
                .values(
                    lease_until=None,
                    leased_by=None,
                    next_query_at=next_query_at,
                    query_count=refunds.c.query_count + 1,
                )
            )
        return result.rowcount == 1

    async def release_refund(self, refund_id: str, worker: str, next_query_at: datetime) -> bool:
        return await self._run(self.release_refund_sync, refund_id, worker, next_query_at)


def _values(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "attempt_id": refund.attempt_id,
        "out_trade_no": refund.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "amount": refund.amount,
        "total": refund.total,
        "currency": refund.currency,
        "reason": refund.reason,
        "status": refund.status.value,
        "settles_order": refund.settles_order,
        "fingerprint": refund.fingerprint,
        "idempotency_key": refund.idempotency_key,
        "refund_id": refund.refund_id,
        "failure": refund.failure,
        "created_at": refund.created_at,
        "updated_at": refund.updated_at,
    }
