"""The refund use case over a real SQLite store and a small in-test WeChat (Protocol impl)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.domain.model import (
    ApiVersion,
    EventType,
    NativeOrderRequest,
    OrderStatus,
    PaymentReport,
    ReportSource,
)
from scanpay.domain.refunds import (
    RefundReport,
    RefundService,
    RefundStatus,
    RefundSubmission,
    RefundVerdict,
)
from scanpay.domain.service import PaymentService
from scanpay.errors import (
    ApiError,
    ConflictError,
    NotFoundError,
    RetryableApiError,
    ValidationError,
)
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.refunds import SqlRefundStore
from scanpay.store.tables import payment_attempts
from scanpay.wechat.states import RefundState, TradeState


@dataclass
class FakeWeChat:
    """Opens orders, accepts refunds (PROCESSING), answers refund queries from a dict."""

    appid: str = "wx0001"
    mchid: str = "1900000001"
    api_version: ApiVersion = ApiVersion.V2
    submitted: list[RefundSubmission] = field(default_factory=list)
    states: dict[str, RefundState] = field(default_factory=dict)
    fail_with: ApiError | None = None

    async def create_native_order(self, request: NativeOrderRequest) -> str:
        return f"weixin://wxpay/bizpayurl?pr={request.out_trade_no[-8:]}"

    async def query_payment(self, out_trade_no: str) -> PaymentReport:
        raise NotImplementedError

    async def close_payment(self, out_trade_no: str) -> None:
        return None

    async def submit_refund(self, submission: RefundSubmission) -> RefundReport:
        if self.fail_with is not None:
            raise self.fail_with
        self.submitted.append(submission)
        self.states.setdefault(submission.out_refund_no, RefundState.PROCESSING)
        return await self.query_refund(submission.out_refund_no)

    async def query_refund(self, out_refund_no: str) -> RefundReport:
        sub = next(s for s in self.submitted if s.out_refund_no == out_refund_no)
        return RefundReport(
            out_refund_no=out_refund_no,
            state=self.states[out_refund_no],
            source="query_v2",
            refund_id="50000000" + out_refund_no[-8:],
            out_trade_no=sub.out_trade_no,
            amount=sub.amount,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlRefundStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'refunds.sqlite3'}")
    upgrade(engine)
    store = SqlRefundStore(engine)
    yield store
    store.close()


@pytest.fixture
def wechat() -> FakeWeChat:
    return FakeWeChat()


@pytest.fixture
def refunds(store: SqlRefundStore, wechat: FakeWeChat) -> RefundService:
    return RefundService(store, wechat)


async def paid_order(store: SqlRefundStore, wechat: FakeWeChat, amount: int = 1000) -> str:
    payments = PaymentService(store, wechat)
    placed = await payments.place_order(amount, "Tea")
    report = PaymentReport(
        out_trade_no=placed.attempt.out_trade_no,
        trade_state=TradeState.SUCCESS,
        amount=amount,
        currency="CNY",
        transaction_id="4200000000000001",
        appid=wechat.appid,
        mchid=wechat.mchid,
        source=ReportSource.NOTIFICATION_V2,
    )
    await payments.apply_payment_report(report)
    return placed.order.id


async def succeed(refunds: RefundService, wechat: FakeWeChat, out_refund_no: str) -> None:
    wechat.states[out_refund_no] = RefundState.SUCCESS
    outcome = await refunds.reconcile_refund(out_refund_no)
    assert outcome.verdict is RefundVerdict.APPLIED


def refund_events(store: SqlRefundStore, order_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.type.value, e.status.value if e.status else None)
        for e in store.events_after_sync(order_id, 0)
        if e.type in (EventType.PARTIALLY_REFUNDED, EventType.REFUNDED)
    ]


async def test_partial_then_full_refund_moves_the_order_on_success_only(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat, 1000)
    first = (await refunds.refund(order_id, 300, idempotency_key="k1", reason="broken")).refund
    assert first.status is RefundStatus.PROCESSING
    assert wechat.submitted[0].total == 1000
    assert wechat.submitted[0].amount == 300
    assert (await store.get_order(order_id)).status is OrderStatus.PAID  # not yet refunded
    await succeed(refunds, wechat, first.out_refund_no)
    assert (await store.get_order(order_id)).status is OrderStatus.PARTIALLY_REFUNDED
    assert await store.refunded_amount(order_id) == 300
    second = (await refunds.refund(order_id, 200, idempotency_key="k2")).refund
    await succeed(refunds, wechat, second.out_refund_no)
    assert (await store.get_order(order_id)).status is OrderStatus.PARTIALLY_REFUNDED
    last = (await refunds.refund(order_id, 500, idempotency_key="k3")).refund
    await succeed(refunds, wechat, last.out_refund_no)
    assert (await store.get_order(order_id)).status is OrderStatus.REFUNDED
    assert await store.refunded_amount(order_id) == 1000
    assert refund_events(store, order_id) == [
        ("partially_refunded", "partially_refunded"),
        ("partially_refunded", "partially_refunded"),
        ("refunded", "refunded"),
    ]


async def test_refund_is_stored_before_wechat_is_called(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat)
    wechat.fail_with = RetryableApiError("busy")
    with pytest.raises(RetryableApiError):
        await refunds.refund(order_id, 100, idempotency_key="retry-me")
    [stored] = await store.refunds_for_order(order_id)
    assert stored.status is RefundStatus.SUBMITTING
    wechat.fail_with = None
    again = await refunds.refund(order_id, 100, idempotency_key="retry-me")
    assert not again.created
    assert again.refund.out_refund_no == stored.out_refund_no
    assert again.refund.status is RefundStatus.PROCESSING


async def test_a_definite_refusal_marks_the_refund_failed_and_frees_the_amount(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat, 500)
    wechat.fail_with = ApiError("no money", code="NOTENOUGH")
    with pytest.raises(ApiError):
        await refunds.refund(order_id, 500, idempotency_key="a")
    [failed] = await store.refunds_for_order(order_id)
    assert failed.status is RefundStatus.FAILED
    assert failed.failure == "NOTENOUGH"
    wechat.fail_with = None
    placed = await refunds.refund(order_id, 500, idempotency_key="b")
    assert placed.refund.status is RefundStatus.PROCESSING


async def test_amount_rules(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat, 1000)
    for amount in (0, -1, 2**31, True):
        with pytest.raises(ValidationError):
            await refunds.refund(order_id, amount, idempotency_key=f"bad{amount}")
    await refunds.refund(order_id, 700, idempotency_key="x")
    with pytest.raises(ValidationError) as info:
        await refunds.refund(order_id, 301, idempotency_key="y")  # 700 is held while processing
    assert info.value.code == "REFUND_EXCEEDS_PAYMENT"
    await refunds.refund(order_id, 300, idempotency_key="z")
    with pytest.raises(ValidationError):
        await refunds.refund(order_id, 1, idempotency_key="w", reason="x" * 81)


async def test_idempotency_same_body_same_refund_other_body_conflict(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat)
    first = await refunds.refund(order_id, 100, idempotency_key="same", reason="r")
    replay = await refunds.refund(order_id, 100, idempotency_key="same", reason="r")
    assert first.created
    assert not replay.created
    assert replay.refund.id == first.refund.id
    assert len(wechat.submitted) == 1
    with pytest.raises(ConflictError) as info:
        await refunds.refund(order_id, 101, idempotency_key="same", reason="r")
    assert info.value.code == "IDEMPOTENCY_KEY_REUSED"


async def test_unpaid_or_unknown_orders_cannot_be_refunded(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    placed = await PaymentService(store, wechat).place_order(100, "Tea")
    with pytest.raises(ConflictError) as info:
        await refunds.refund(placed.order.id, 100, idempotency_key="k")
    assert info.value.code == "ORDER_NOT_PAID"
    with pytest.raises(NotFoundError):
        await refunds.refund("ord_" + "x" * 22, 100, idempotency_key="k2")


async def test_concurrent_refunds_never_exceed_the_payment(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat, 1000)
    results = await asyncio.gather(
        *(refunds.refund(order_id, 300, idempotency_key=f"c{i}") for i in range(6)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 3
    assert all(isinstance(r, ValidationError) for r in results if isinstance(r, BaseException))


async def test_duplicate_and_stale_reports_change_nothing(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat)
    refund = (await refunds.refund(order_id, 1000, idempotency_key="k")).refund
    report = RefundReport(refund.out_refund_no, RefundState.SUCCESS, "notification_v2",
                          amount=1000)  # fmt: skip
    outcomes = await asyncio.gather(*(refunds.apply_refund_report(report) for _ in range(10)))
    assert [o.verdict for o in outcomes].count(RefundVerdict.APPLIED) == 1
    stale = RefundReport(refund.out_refund_no, RefundState.PROCESSING, "query_v2")
    assert (await refunds.apply_refund_report(stale)).verdict is RefundVerdict.NOTED
    assert refund_events(store, order_id) == [("refunded", "refunded")]


async def test_mismatched_or_unknown_reports_are_alerts(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat)
    refund = (await refunds.refund(order_id, 400, idempotency_key="k")).refund
    wrong = RefundReport(refund.out_refund_no, RefundState.SUCCESS, "notification_v3", amount=999)
    assert (await refunds.apply_refund_report(wrong)).verdict is RefundVerdict.REJECTED
    unknown = RefundReport("rf-nobody", RefundState.SUCCESS, "notification_v3")
    assert (await refunds.apply_refund_report(unknown)).verdict is RefundVerdict.REJECTED
    reasons = [a.data["reason"] for a in store.alerts_sync()]
    assert reasons == ["refund_amount_mismatch", "unknown_out_refund_no"]
    assert (await store.get_order(order_id)).status is OrderStatus.PAID


async def test_closed_refund_releases_the_amount(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    order_id = await paid_order(store, wechat, 1000)
    refund = (await refunds.refund(order_id, 1000, idempotency_key="k")).refund
    wechat.states[refund.out_refund_no] = RefundState.CLOSED
    await refunds.reconcile_refund(refund.out_refund_no)
    assert (await store.find_refund(refund.out_refund_no)).status is RefundStatus.CLOSED  # type: ignore[union-attr]
    again = await refunds.refund(order_id, 1000, idempotency_key="k2")
    assert again.refund.status is RefundStatus.PROCESSING


async def test_refund_of_another_attempt_never_changes_the_order(
    store: SqlRefundStore, wechat: FakeWeChat, refunds: RefundService
) -> None:
    """What the double-payment auto refund does: refund the second attempt in full."""
    order_id = await paid_order(store, wechat, 800)
    attempt = await store.current_attempt(order_id)
    second = attempt.out_trade_no[:-1] + ("A" if attempt.out_trade_no[-1] != "A" else "B")
    with store.engine.begin() as conn:  # a second attempt, as a replacement QR would make
        conn.execute(
            sa.insert(payment_attempts).values(
                id="att_second", order_id=order_id, out_trade_no=second,
                api_version=attempt.api_version.value, appid=attempt.appid, mchid=attempt.mchid,
                amount=attempt.amount, currency=attempt.currency, status="active",
                created_at=attempt.created_at, updated_at=attempt.updated_at,
            )
        )  # fmt: skip
    placed = await refunds.refund(
        order_id, 800, idempotency_key="auto:" + second, reason="second payment",
        out_trade_no=second,
    )  # fmt: skip
    assert not placed.refund.settles_order
    await succeed(refunds, wechat, placed.refund.out_refund_no)
    assert (await store.get_order(order_id)).status is OrderStatus.PAID
    assert await store.refunded_amount(order_id) == 0
    assert refund_events(store, order_id) == []
