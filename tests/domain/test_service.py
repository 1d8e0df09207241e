"""Use cases over a real SQLite store and a small in-test gateway (a Protocol implementation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    EventType,
    NativeOrderRequest,
    OrderStatus,
    PaymentReport,
    ReportSource,
)
from scanpay.domain.ports import IdempotencyClaim
from scanpay.domain.service import PaymentService, ReportVerdict
from scanpay.errors import ApiError, RetryableApiError
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.sql import SqlStore
from scanpay.wechat.states import TradeState


@dataclass
class LedgerGateway:
    """Remembers what was opened; answers queries from a dict; can be told to fail."""

    appid: str = "wx0001"
    mchid: str = "1900000001"
    api_version: ApiVersion = ApiVersion.V2
    opened: list[NativeOrderRequest] = field(default_factory=list)
    states: dict[str, TradeState] = field(default_factory=dict)
    fail_with: ApiError | None = None

    async def create_native_order(self, request: NativeOrderRequest) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.opened.append(request)
        return f"weixin://wxpay/bizpayurl?pr={request.out_trade_no[-8:]}"

    async def query_payment(self, out_trade_no: str) -> PaymentReport:
        request = next(r for r in self.opened if r.out_trade_no == out_trade_no)
        return PaymentReport(
            out_trade_no=out_trade_no,
            trade_state=self.states.get(out_trade_no, TradeState.NOTPAY),
            amount=request.amount,
            currency="CNY",
            transaction_id="4200000000000001",
            appid=self.appid,
            mchid=self.mchid,
            source=ReportSource.QUERY_V2,
        )

    async def close_payment(self, out_trade_no: str) -> None:
        self.states[out_trade_no] = TradeState.CLOSED


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.sqlite3'}")
    upgrade(engine)
    store = SqlStore(engine)
    yield store
    store.close()


@pytest.fixture
def gateway() -> LedgerGateway:
    return LedgerGateway()


@pytest.fixture
def service(store: SqlStore, gateway: LedgerGateway) -> PaymentService:
    return PaymentService(store, gateway)


def success(out_trade_no: str, amount: int, gateway: LedgerGateway) -> PaymentReport:
    return PaymentReport(
        out_trade_no=out_trade_no,
        trade_state=TradeState.SUCCESS,
        amount=amount,
        currency="CNY",
        transaction_id="4200000000000002",
        appid=gateway.appid,
        mchid=gateway.mchid,
        source=ReportSource.NOTIFICATION_V2,
    )


async def test_place_order_stores_then_opens(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    placed = await service.place_order(250, "Green tea")
    assert placed.attempt.status is AttemptStatus.ACTIVE
    assert placed.attempt.code_url is not None
    assert gateway.opened[0].out_trade_no == placed.attempt.out_trade_no
    assert gateway.opened[0].amount == 250
    types = [e.type for e in await service.store.events_after(placed.order.id, 0)]
    assert types == [EventType.CREATED, EventType.QR_READY]


async def test_transient_failure_leaves_attempt_to_retry_with_same_number(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    gateway.fail_with = RetryableApiError("busy")
    claim = IdempotencyClaim("k1", "0" * 64)
    with pytest.raises(RetryableApiError):
        await service.place_order(100, "Tea", claim)
    gateway.fail_with = None
    placed = await service.place_order(100, "Tea", claim)
    assert not placed.created
    assert placed.attempt.status is AttemptStatus.ACTIVE
    assert len(gateway.opened) == 1


async def test_refused_order_marks_attempt_failed(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    gateway.fail_with = ApiError("bad", code="PARAM_ERROR")
    with pytest.raises(ApiError):
        await service.place_order(100, "Tea", IdempotencyClaim("k2", "0" * 64))
    replay = await service.place_order(100, "Tea", IdempotencyClaim("k2", "0" * 64))
    assert replay.attempt.status is AttemptStatus.FAILED


async def test_verified_success_pays_once(service: PaymentService, gateway: LedgerGateway) -> None:
    placed = await service.place_order(100, "Tea")
    report = success(placed.attempt.out_trade_no, 100, gateway)
    outcomes = await asyncio.gather(*(service.apply_payment_report(report) for _ in range(10)))
    verdicts = sorted(o.verdict for o in outcomes)
    assert verdicts.count(ReportVerdict.APPLIED) == 1
    assert set(verdicts) <= {ReportVerdict.APPLIED, ReportVerdict.DUPLICATE}
    assert all(o.acknowledged for o in outcomes)
    events = await service.store.events_after(placed.order.id, 0)
    assert [e.type for e in events].count(EventType.PAID) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": 1}, "amount_mismatch"),
        ({"currency": "USD"}, "currency_mismatch"),
        ({"appid": "wx9999"}, "appid_mismatch"),
        ({"mchid": "1999999999"}, "mchid_mismatch"),
    ],
)
async def test_mismatch_is_an_alert_never_a_payment(
    service: PaymentService, gateway: LedgerGateway, change: dict[str, object], reason: str
) -> None:
    placed = await service.place_order(100, "Tea")
    report = replace(success(placed.attempt.out_trade_no, 100, gateway), **change)  # type: ignore[arg-type]
    outcome = await service.apply_payment_report(report)
    assert outcome.verdict is ReportVerdict.REJECTED
    assert outcome.reason == reason
    assert not outcome.acknowledged
    assert (await service.store.get_order(placed.order.id)).status is OrderStatus.PENDING
    assert [a.data["reason"] for a in service.store.alerts_sync()] == [reason]  # type: ignore[attr-defined]


async def test_unknown_out_trade_no_is_rejected(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    outcome = await service.apply_payment_report(success("sp000000000000unknown", 1, gateway))
    assert outcome.verdict is ReportVerdict.REJECTED
    assert outcome.order_id is None


async def test_reconcile_by_query(service: PaymentService, gateway: LedgerGateway) -> None:
    placed = await service.place_order(100, "Tea")
    waiting = await service.reconcile(placed.order.id)
    assert waiting.verdict is ReportVerdict.NOTED
    gateway.states[placed.attempt.out_trade_no] = TradeState.SUCCESS
    paid = await service.reconcile(placed.order.id)
    assert paid.verdict is ReportVerdict.APPLIED
    assert (await service.store.get_order(placed.order.id)).status is OrderStatus.PAID


async def test_concurrent_duplicates_raise_no_false_alarm(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    placed = await service.place_order(100, "Tea")
    report = success(placed.attempt.out_trade_no, 100, gateway)
    await asyncio.gather(*(service.apply_payment_report(report) for _ in range(20)))
    assert service.store.alerts_sync() == []  # type: ignore[attr-defined]


async def test_payment_for_a_closed_order_is_flagged_not_counted(
    service: PaymentService, gateway: LedgerGateway
) -> None:
    placed = await service.place_order(100, "Tea")
    await service.store.apply_trigger(placed.order.id, Trigger.CLOSE, {})
    outcome = await service.apply_payment_report(success(placed.attempt.out_trade_no, 100, gateway))
    assert outcome.verdict is ReportVerdict.NOTED
    assert outcome.reason == "payment_after_close"
    assert outcome.acknowledged
    assert (await service.store.get_order(placed.order.id)).status is OrderStatus.CLOSED
    assert [a.data["reason"] for a in service.store.alerts_sync()] == [  # type: ignore[attr-defined]
        "payment_after_close"
    ]
