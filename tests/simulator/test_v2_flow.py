"""The v2 Native flow through the project's own client: order, pay, notify, query, close."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from scanpay.client.v2 import V2Client
from scanpay.errors import ApiError, InvalidTransitionError, NotFoundError
from scanpay.simulator import PayOutcome, SimClock, Simulator
from scanpay.wechat.fields import format_v2_time
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.notify import verify_payment_notification

from .conftest import NOTIFY_URL, Receiver, make_client, order


async def test_order_pay_notify_query(sim: Simulator, client: V2Client, receiver: Receiver) -> None:
    created = await client.create_native_order(order())
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=[0-9A-Za-z]{9}", created.code_url)
    assert re.fullmatch(r"wx20250301100000[0-9a-f]{22}", created.prepay_id)
    assert created.trade_type == "NATIVE"

    before = await client.query_order(out_trade_no="order-0001")
    assert before.trade_state is TradeState.NOTPAY
    assert before.transaction_id == ""

    result = await sim.pay(code_url=created.code_url)
    assert result.paid
    assert re.fullmatch(r"\d{28}", result.transaction_id)
    assert receiver.bodies == []  # nothing is sent until the notifier runs
    assert await sim.deliver_due_notifications() == 1

    [body] = receiver.bodies
    note = verify_payment_notification(body, sim.credentials.api_v2_key)
    assert note.sign_type is SignType.MD5
    assert note.status.out_trade_no == "order-0001"
    assert note.status.total_fee == 1250
    assert note.status.transaction_id == result.transaction_id
    assert note.status.attach == "cart=42"
    assert note.status.appid == sim.credentials.appid
    assert note.status.mch_id == sim.credentials.mchid
    for name in ("openid", "is_subscribe", "bank_type", "cash_fee", "fee_type", "nonce_str"):
        assert note.fields[name]
    assert note.fields["trade_type"] == "NATIVE"
    assert note.fields["time_end"] == "20250301100000"

    after = await client.query_order(out_trade_no="order-0001")
    assert after.trade_state is TradeState.SUCCESS
    assert after.transaction_id == result.transaction_id
    by_id = await client.query_order(transaction_id=result.transaction_id)
    assert by_id.out_trade_no == "order-0001"
    [logged] = sim.notification_log()
    assert logged["status"] == "delivered"
    assert logged["attempts"][0]["acknowledged"] is True


async def test_hmac_order_gets_hmac_answers_and_notification(
    sim: Simulator, receiver: Receiver
) -> None:
    async with make_client(sim, SignType.HMAC_SHA256) as hmac_client:
        created = await hmac_client.create_native_order(order("hmac-order-1"))
        await sim.pay(code_url=created.code_url)
        status = await hmac_client.query_order(out_trade_no="hmac-order-1")
    assert status.trade_state is TradeState.SUCCESS
    await sim.deliver_due_notifications()
    note = verify_payment_notification(receiver.bodies[0], sim.credentials.api_v2_key)
    assert note.sign_type is SignType.HMAC_SHA256


async def test_same_request_same_code_other_params_rejected(client: V2Client) -> None:
    first = await client.create_native_order(order())
    again = await client.create_native_order(order())
    assert again.code_url == first.code_url
    assert again.prepay_id == first.prepay_id
    with pytest.raises(ApiError) as caught:
        await client.create_native_order(order(total_fee=1))
    assert caught.value.code == "INVALID_REQUEST"
    assert "重复" in caught.value.message


async def test_code_url_reissued_after_two_hours(
    sim: Simulator, client: V2Client, clock: SimClock
) -> None:
    first = await client.create_native_order(order())
    clock.advance(2 * 3600 + 1)
    with pytest.raises(InvalidTransitionError) as stale:
        await sim.pay(code_url=first.code_url)
    assert stale.value.code == "CODE_URL_EXPIRED"
    second = await client.create_native_order(order())
    assert second.code_url != first.code_url
    assert (await sim.pay(code_url=second.code_url)).paid


async def test_paid_and_closed_orders_cannot_be_created_again(
    sim: Simulator, client: V2Client
) -> None:
    paid = await client.create_native_order(order("paid-order"))
    await sim.pay(code_url=paid.code_url)
    with pytest.raises(ApiError) as again_paid:
        await client.create_native_order(order("paid-order"))
    assert again_paid.value.code == "ORDERPAID"

    await client.create_native_order(order("closed-order"))
    await client.close_order("closed-order")
    with pytest.raises(ApiError) as again_closed:
        await client.create_native_order(order("closed-order"))
    assert again_closed.value.code == "ORDERCLOSED"


async def test_close_states(sim: Simulator, client: V2Client) -> None:
    created = await client.create_native_order(order())
    await client.close_order("order-0001")
    assert (await client.query_order(out_trade_no="order-0001")).trade_state is TradeState.CLOSED
    with pytest.raises(ApiError) as twice:
        await client.close_order("order-0001")
    assert twice.value.code == "ORDERCLOSED"
    with pytest.raises(InvalidTransitionError) as refused:
        await sim.pay(code_url=created.code_url)
    assert refused.value.code == "ORDER_CLOSED"
    with pytest.raises(ApiError) as missing:
        await client.close_order("never-created")
    assert missing.value.code == "ORDERNOTEXIST"


async def test_closing_a_paid_order_is_orderpaid(sim: Simulator, client: V2Client) -> None:
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    with pytest.raises(ApiError) as caught:
        await client.close_order("order-0001")
    assert caught.value.code == "ORDERPAID"
    with pytest.raises(InvalidTransitionError) as twice:
        await sim.pay(out_trade_no="order-0001")
    assert twice.value.code == "ORDER_PAID"


async def test_query_unknown_order(client: V2Client) -> None:
    with pytest.raises(ApiError) as caught:
        await client.query_order(out_trade_no="no-such-order")
    assert caught.value.code == "ORDERNOTEXIST"


@pytest.mark.parametrize("outcome", [PayOutcome.CANCEL, PayOutcome.INSUFFICIENT_BALANCE])
async def test_unpaid_outcomes_leave_notpay(
    sim: Simulator, client: V2Client, receiver: Receiver, outcome: PayOutcome
) -> None:
    created = await client.create_native_order(order())
    result = await sim.pay(code_url=created.code_url, outcome=outcome)
    assert not result.paid
    assert result.trade_state is TradeState.NOTPAY
    assert await sim.deliver_due_notifications() == 0
    assert receiver.bodies == []
    assert (await client.query_order(out_trade_no="order-0001")).trade_state is TradeState.NOTPAY
    assert (await sim.pay(code_url=created.code_url)).paid  # the payer may try again


async def test_pay_after_time_expire_fails(
    sim: Simulator, client: V2Client, clock: SimClock
) -> None:
    expire = format_v2_time(clock.now() + timedelta(minutes=10))
    await client.create_native_order(order(time_expire=expire))
    clock.advance(10 * 60)
    with pytest.raises(InvalidTransitionError) as caught:
        await sim.pay(out_trade_no="order-0001")
    assert caught.value.code == "ORDER_EXPIRED"


async def test_time_expire_too_soon_is_refused(client: V2Client, clock: SimClock) -> None:
    expire = format_v2_time(clock.now() + timedelta(minutes=2))
    with pytest.raises(ApiError) as caught:
        await client.create_native_order(order(time_expire=expire))
    assert caught.value.code == "RETURN_FAIL"
    assert "time_expire" in caught.value.message


async def test_unknown_code_or_order(sim: Simulator) -> None:
    with pytest.raises(NotFoundError):
        await sim.pay(code_url="weixin://wxpay/bizpayurl?pr=nothere00")
    with pytest.raises(NotFoundError):
        await sim.pay(out_trade_no="nothing-here")


async def test_notify_url_is_the_orders(sim: Simulator, client: V2Client) -> None:
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    [logged] = sim.notification_log()
    assert logged["url"] == NOTIFY_URL
