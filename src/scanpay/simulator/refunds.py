"""The simulator's refunds: rules, states and refund notifications, shared by API v2 and v3.

A refund names a paid order (by ``transaction_id``, which wins, or ``out_trade_no``), a
merchant refund number, the order's total and the amount to refund. Rules (PROTOCOL.md 2.6,
3.8): the order must exist and be paid (``SUCCESS`` or already ``REFUND``), within a year of
payment; ``total`` must be the order's amount; all refunds of an order together never exceed
it; at most 50 refunds per order. The same ``out_refund_no`` again with the same order and
amounts is answered with the refund made the first time (WeChat refunds a number once);
with anything different it is refused.

A new refund is ``PROCESSING``. On the first notifier tick at least :attr:`RefundBook.settle_after`
simulated seconds later it becomes ``SUCCESS`` (compare-and-set), the order's ``trade_state``
becomes ``REFUND``, and, when the refund carried a ``notify_url``, a refund notification is
queued: v2 an XML envelope with ``req_info`` (AES-256-ECB under the MD5 of the API v2 key,
unsigned), v3 a ``REFUND.SUCCESS`` event with the encrypted ``refund`` resource (signed per
attempt by the notifier). Both are retried on the payment schedule. Without a ``notify_url``
nothing is sent (WeChat would use the URL configured in the merchant platform; the simulator
has none). Rule violations raise :class:`RefundRefused` carrying a neutral reason that the
v2 and v3 front ends turn into their own error codes.
"""

from __future__ import annotations

import secrets
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from scanpay.errors import ScanpayError
from scanpay.simulator import ids
from scanpay.simulator.clock import SimClock
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.simulator.ledger import Ledger, Order
from scanpay.wechat.fields import format_v2_refund_time, parse_v2_time
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v2.refund_notify import RefundNotification, build_refund_notification
from scanpay.wechat.v2.refunds import RefundStatus
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.refunds import Refund

MAX_REFUNDS_PER_ORDER: Final = 50
REFUND_WINDOW: Final = timedelta(days=365)
DEFAULT_SETTLE_AFTER: Final = 1.0
CHANNEL: Final = "ORIGINAL"
RECEIVED_ACCOUNT: Final = "支付用户零钱"
REFUNDABLE: Final = (TradeState.SUCCESS, TradeState.REFUND)
#: what a PROCESSING refund can become (WeChat: SUCCESS, REFUNDCLOSE / CLOSED, CHANGE / ABNORMAL)
OUTCOMES: Final = (RefundState.SUCCESS, RefundState.CLOSED, RefundState.ABNORMAL)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS refunds (
    out_refund_no TEXT PRIMARY KEY,
    refund_id TEXT NOT NULL UNIQUE,
    out_trade_no TEXT NOT NULL REFERENCES orders(out_trade_no),
    api TEXT NOT NULL,
    total_fee INTEGER NOT NULL,
    refund_fee INTEGER NOT NULL,
    reason TEXT NOT NULL,
    notify_url TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    success_at REAL
);
CREATE INDEX IF NOT EXISTS refunds_order ON refunds(out_trade_no, created_at);
CREATE INDEX IF NOT EXISTS refunds_due ON refunds(status, due_at);
"""


class Refusal(StrEnum):
    """Why a refund was refused (each front end has its own wording and codes)."""

    ORDER_NOT_FOUND = "order_not_found"
    NOT_PAID = "not_paid"
    TOO_OLD = "too_old"
    TOTAL_MISMATCH = "total_mismatch"
    OVER_REFUND = "over_refund"
    TOO_MANY = "too_many"
    NUMBER_REUSED = "number_reused"


class RefundRefused(ScanpayError):
    code = "REFUND_REFUSED"

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message, code=reason.value)
        self.reason = reason


@dataclass(frozen=True)
class SimRefund:
    """One refund in the ledger."""

    out_refund_no: str
    refund_id: str
    out_trade_no: str
    api: str
    total_fee: int
    refund_fee: int
    reason: str
    notify_url: str
    status: RefundState
    created_at: float
    due_at: float
    success_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SimRefund:
        values = dict(row)
        values["status"] = RefundState(values["status"])
        return cls(**values)

    @property
    def v2_status(self) -> RefundStatus:
        return {
            RefundState.SUCCESS: RefundStatus.SUCCESS,
            RefundState.PROCESSING: RefundStatus.PROCESSING,
            RefundState.CLOSED: RefundStatus.REFUNDCLOSE,
            RefundState.ABNORMAL: RefundStatus.CHANGE,
        }[self.status]

    def success_time_v2(self) -> str:
        if self.success_at is None:
            return ""
        return format_v2_refund_time(datetime.fromtimestamp(self.success_at, UTC))


@dataclass(frozen=True)
class RefundAsk:
    """A refund application, version-neutral."""

    out_refund_no: str
    total_fee: int
    refund_fee: int
    out_trade_no: str = ""
    transaction_id: str = ""
    reason: str = ""
    notify_url: str = ""


def refund_id(moment: datetime) -> str:
    """29 digits like WeChat's: ``50`` + 27 digits, the date in the middle."""
    return "50" + ids.digits(9) + moment.strftime("%Y%m%d") + ids.digits(10)


class RefundBook:
    """Refunds in the ledger; :meth:`settle` is a notifier ``before_delivery`` hook."""

    def __init__(
        self,
        creds: MerchantCredentials,
        ledger: Ledger,
        clock: SimClock,
        *,
        on_notification: Callable[[], None],
        settle_after: float = DEFAULT_SETTLE_AFTER,
    ) -> None:
        self._creds = creds
        self._ledger = ledger
        self._clock = clock
        self._on_notification = on_notification
        #: simulated seconds a refund stays PROCESSING (0: settle on the next notifier tick)
        self.settle_after = settle_after
        #: what due refunds become: SUCCESS, or CLOSED / ABNORMAL when a tester chooses so
        self.outcome = RefundState.SUCCESS
        ledger.ensure_schema(_SCHEMA)

    # reading ------------------------------------------------------------------------------

    def get(self, out_refund_no: str) -> SimRefund | None:
        row = self._ledger.fetch_one("SELECT * FROM refunds WHERE out_refund_no = ?", out_refund_no)
        return SimRefund.from_row(row) if row else None

    def by_refund_id(self, refund_id_: str) -> SimRefund | None:
        row = self._ledger.fetch_one("SELECT * FROM refunds WHERE refund_id = ?", refund_id_)
        return SimRefund.from_row(row) if row else None

    def of_order(self, out_trade_no: str) -> list[SimRefund]:
        rows = self._ledger.fetch_all(
            "SELECT * FROM refunds WHERE out_trade_no = ? ORDER BY created_at, rowid", out_trade_no
        )
        return [SimRefund.from_row(row) for row in rows]

    def all(self) -> list[SimRefund]:
        rows = self._ledger.fetch_all("SELECT * FROM refunds ORDER BY created_at, rowid")
        return [SimRefund.from_row(row) for row in rows]

    def find_order(self, *, out_trade_no: str = "", transaction_id: str = "") -> Order | None:
        if transaction_id:
            return self._ledger.order_by_transaction_id(transaction_id)
        return self._ledger.order(out_trade_no) if out_trade_no else None

    # applying -----------------------------------------------------------------------------

    def apply(self, ask: RefundAsk, *, api: str) -> SimRefund:
        """The refund for ``ask``: a new one, or the same one again; :class:`RefundRefused`."""
        order = self.find_order(out_trade_no=ask.out_trade_no, transaction_id=ask.transaction_id)
        if order is None:
            raise RefundRefused(Refusal.ORDER_NOT_FOUND, "订单不存在")
        now = self._clock.timestamp()
        with self._ledger.transaction() as db:
            row = db.execute(
                "SELECT * FROM refunds WHERE out_refund_no = ?", (ask.out_refund_no,)
            ).fetchone()
            if row is not None:
                existing = SimRefund.from_row(row)
                same = (
                    existing.out_trade_no == order.out_trade_no
                    and existing.total_fee == ask.total_fee
                    and existing.refund_fee == ask.refund_fee
                )
                if not same:
                    raise RefundRefused(
                        Refusal.NUMBER_REUSED, "同一退款单号的订单或金额与之前的请求不一致"
                    )
                return existing
            self._check(order, ask, now, db)
            created = SimRefund(
                out_refund_no=ask.out_refund_no,
                refund_id=refund_id(self._clock.now()),
                out_trade_no=order.out_trade_no,
                api=api,
                total_fee=ask.total_fee,
                refund_fee=ask.refund_fee,
                reason=ask.reason,
                notify_url=ask.notify_url,
                status=RefundState.PROCESSING,
                created_at=now,
                due_at=now + self.settle_after,
                success_at=None,
            )
            values = created.__dict__.copy()
            values["status"] = created.status.value
            names = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            db.execute(f"INSERT INTO refunds ({names}) VALUES ({marks})", values)
        self._on_notification()  # wake the notifier: it settles refunds that are due
        return created

    def _check(self, order: Order, ask: RefundAsk, now: float, db: sqlite3.Connection) -> None:
        if order.trade_state not in REFUNDABLE:
            raise RefundRefused(Refusal.NOT_PAID, f"订单状态为{order.trade_state.value}，不能退款")
        if order.time_end and now - parse_v2_time(order.time_end).timestamp() > (
            REFUND_WINDOW.total_seconds()
        ):
            raise RefundRefused(Refusal.TOO_OLD, "订单已超过退款期限")
        if ask.total_fee != order.total_fee:
            raise RefundRefused(Refusal.TOTAL_MISMATCH, "订单金额与原订单不一致")
        count, refunded = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(refund_fee), 0) FROM refunds"
            " WHERE out_trade_no = ? AND status != ?",
            (order.out_trade_no, RefundState.CLOSED.value),
        ).fetchone()
        if count >= MAX_REFUNDS_PER_ORDER:
            raise RefundRefused(Refusal.TOO_MANY, "一笔订单最多退款50次")
        if refunded + ask.refund_fee > order.total_fee:
            left = order.total_fee - refunded
            raise RefundRefused(Refusal.OVER_REFUND, f"累计退款金额大于支付金额 (可退 {left} 分)")

    # settling -----------------------------------------------------------------------------

    def settle(self) -> int:
        """PROCESSING refunds that are due get :attr:`outcome`; returns how many did."""
        now = self._clock.timestamp()
        rows = self._ledger.fetch_all(
            "SELECT out_refund_no FROM refunds WHERE status = ? AND due_at <= ?",
            RefundState.PROCESSING.value,
            now,
        )
        return sum(self.finish(row["out_refund_no"], self.outcome, now) for row in rows)

    def finish(self, out_refund_no: str, outcome: RefundState, now: float | None = None) -> bool:
        """Move one refund to ``outcome`` now (compare-and-set) and queue its notification.

        From PROCESSING: SUCCESS (the order becomes ``REFUND``), CLOSED (the amount can be
        refunded again) or ABNORMAL (stuck; the money stays held). From ABNORMAL: SUCCESS or
        CLOSED, as when a person resolves it. False when the refund is not in such a state.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"a refund cannot settle as {outcome.value}")
        at = self._clock.timestamp() if now is None else now
        allowed = [RefundState.PROCESSING.value]
        if outcome is not RefundState.ABNORMAL:
            allowed.append(RefundState.ABNORMAL.value)
        success_at = at if outcome is RefundState.SUCCESS else None
        with self._ledger.transaction() as db:
            won = db.execute(
                "UPDATE refunds SET status = ?, success_at = ?"
                " WHERE out_refund_no = ? AND status IN (?, ?)",
                (outcome.value, success_at, out_refund_no, allowed[0], allowed[-1]),
            ).rowcount
        if not won:
            return False
        refund = self.get(out_refund_no)
        assert refund is not None
        if outcome is RefundState.SUCCESS:
            self._ledger.transition(
                refund.out_trade_no, expected=TradeState.SUCCESS, new=TradeState.REFUND, at=at
            )
        order = self._ledger.order(refund.out_trade_no)
        assert order is not None
        if refund.notify_url:
            self._queue_notification(refund, order)
        return True

    def _queue_notification(self, refund: SimRefund, order: Order) -> None:
        if refund.api == "v3":
            kind, content_type = "refund_v3", "application/json"
            body = build_notification(
                v3_refund(refund, order),
                self._creds.api_v3_key,
                notification_id=str(uuid.uuid4()),
                create_time=self._clock.now(),
                nonce=secrets.token_hex(6),
            )
        else:
            kind, content_type = "refund_v2", "text/xml"
            notification = RefundNotification(
                appid=order.appid,
                mch_id=order.mch_id,
                transaction_id=order.transaction_id or "",
                out_trade_no=order.out_trade_no,
                refund_id=refund.refund_id,
                out_refund_no=refund.out_refund_no,
                total_fee=refund.total_fee,
                refund_fee=refund.refund_fee,
                refund_status=refund.v2_status,
                settlement_total_fee=refund.total_fee,
                settlement_refund_fee=refund.refund_fee,
                success_time=refund.success_time_v2(),
                refund_recv_accout=RECEIVED_ACCOUNT,
                refund_account="REFUND_SOURCE_UNSETTLED_FUNDS",
                refund_request_source="API",
            )
            body = build_refund_notification(
                notification, self._creds.api_v2_key, nonce=ids.nonce()
            )
        self._ledger.add_notification(
            kind=kind,
            out_trade_no=order.out_trade_no,
            url=refund.notify_url,
            body=body,
            content_type=content_type,
            at=self._clock.timestamp(),
        )
        self._on_notification()


def v3_refund(refund: SimRefund, order: Order) -> Refund:
    """The v3 Refund object (answers carry ``status``; notifications ``refund_status``)."""
    success = refund.success_at
    return Refund(
        out_refund_no=refund.out_refund_no,
        refund_id=refund.refund_id,
        status=refund.status,
        out_trade_no=order.out_trade_no,
        transaction_id=order.transaction_id or "",
        mchid=order.mch_id,
        channel=CHANNEL,
        user_received_account=RECEIVED_ACCOUNT,
        success_time=datetime.fromtimestamp(success, UTC) if success is not None else None,
        create_time=datetime.fromtimestamp(refund.created_at, UTC),
        funds_account="AVAILABLE",
        total=refund.total_fee,
        refund=refund.refund_fee,
        payer_total=refund.total_fee,
        payer_refund=refund.refund_fee,
    )
