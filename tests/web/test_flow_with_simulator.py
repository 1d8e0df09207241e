"""Service and simulator over HTTP, in one process: the payment rules of issue 2."""

from __future__ import annotations

import asyncio

from scanpay.simulator import PayOutcome
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.notify import build_payment_notification, is_success_ack
from tests.web.conftest import Shop


def notification_fields(
    shop: Shop, order: dict[str, object], **changes: object
) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "appid": shop.settings.appid,
        "mch_id": shop.settings.mchid,
        "nonce_str": "n0nce",
        "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "is_subscribe": "N",
        "trade_type": "NATIVE",
        "bank_type": "OTHERS",
        "total_fee": int(str(order["amount"])),
        "fee_type": "CNY",
        "cash_fee": int(str(order["amount"])),
        "transaction_id": "4200000000202601010000000001",
        "out_trade_no": str(order["out_trade_no"]),
        "time_end": "20260101120000",
    }
    fields.update({k: v for k, v in changes.items() if isinstance(v, str | int)})
    return fields


async def post_notification(shop: Shop, body: bytes) -> tuple[int, bytes]:
    response = await shop.http.post(
        "/notify/v2", content=body, headers={"Content-Type": "text/xml"}
    )
    return response.status_code, response.content


async def status_of(shop: Shop, order_id: object) -> str:
    response = await shop.http.get(f"/api/orders/{order_id}")
    status: str = response.json()["status"]
    return status


async def test_paid_only_after_the_verified_notification(shop: Shop) -> None:
    order = await shop.create_order(2500, "Oolong")
    assert order["code_url"].startswith("weixin://")
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    assert await status_of(shop, order["id"]) == "pending"  # paid at WeChat, not yet told
    assert await shop.sim.deliver_due_notifications() == 1
    assert await status_of(shop, order["id"]) == "paid"
    [note] = shop.sim.notification_log()
    assert note["attempts"][-1]["acknowledged"]
    assert shop.event_types(order["id"]).count("paid") == 1


async def test_cancelled_payment_changes_nothing(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.CANCEL)
    await shop.sim.deliver_due_notifications()
    assert await status_of(shop, order["id"]) == "pending"


async def test_wrong_key_changes_nothing_and_is_a_failure(shop: Shop) -> None:
    order = await shop.create_order()
    before = shop.snapshot()
    body = build_payment_notification(
        notification_fields(shop, order), Secret("w" * 32), SignType.HMAC_SHA256
    )
    status, answer = await post_notification(shop, body)
    assert status == 401
    assert not is_success_ack(answer)
    assert shop.snapshot() == before
    assert await status_of(shop, order["id"]) == "pending"


async def test_different_amount_changes_nothing_and_is_a_failure(shop: Shop) -> None:
    order = await shop.create_order(1999)
    body = build_payment_notification(
        notification_fields(shop, order, total_fee=1, cash_fee=1),
        shop.sim.credentials.api_v2_key,
        SignType.MD5,
    )
    status, answer = await post_notification(shop, body)
    assert status == 422
    assert not is_success_ack(answer)
    assert await status_of(shop, order["id"]) == "pending"
    assert "paid" not in shop.event_types(order["id"])
    assert [a.data["reason"] for a in shop.context.store.alerts_sync()] == ["amount_mismatch"]


async def test_duplicated_notification_gives_one_transition(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    [note] = shop.sim.notification_log()
    body = note["body"].encode()
    for _ in range(3):
        status, answer = await post_notification(shop, body)
        assert status == 200
        assert is_success_ack(answer)
    assert shop.event_types(order["id"]).count("paid") == 1
    assert await status_of(shop, order["id"]) == "paid"


async def test_fifty_identical_notifications_at_once(shop: Shop) -> None:
    order = await shop.create_order()
    body = build_payment_notification(
        notification_fields(shop, order),
        shop.sim.credentials.api_v2_key,
        SignType.HMAC_SHA256,
    )
    answers = await asyncio.gather(*(post_notification(shop, body) for _ in range(50)))
    assert all(status == 200 and is_success_ack(answer) for status, answer in answers)
    assert shop.event_types(order["id"]).count("paid") == 1
    assert shop.count("notifications_received") == 50


async def test_reconcile_by_query_finds_a_payment_without_notification(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"])
    outcome = await shop.context.service.reconcile(order["id"])
    assert outcome.verdict.value == "applied"
    assert await status_of(shop, order["id"]) == "paid"
    await shop.sim.deliver_due_notifications()  # the late notification is a duplicate
    assert shop.event_types(order["id"]).count("paid") == 1
