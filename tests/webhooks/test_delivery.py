"""Webhooks end to end in one process: the service (with the simulator) pays an order and a
real loopback receiver gets ``order.paid``, signed per Standard Webhooks (checked with the
PyPI ``standardwebhooks`` package and scanpay's helper); retries keep the ``webhook-id``;
410 disables the endpoint; ``Retry-After`` is honoured; an order's events arrive in order."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx

from tests.webhooks.conftest import AUTH, HookedShop, open_hooked
from tests.webhooks.receiver import Receiver, check_signed


async def test_paid_order_is_delivered_signed(hooked: HookedShop) -> None:
    order = await hooked.create_order(1234, "Oolong")
    await hooked.pay(order)
    [message] = await hooked.arrived(1)
    check_signed([message], hooked.secret)
    body = message.json
    assert set(body) == {"id", "type", "created", "data"}
    assert body["type"] == "order.paid"
    assert body["id"].startswith("evt_")
    data = body["data"]
    assert (data["id"], data["status"], data["amount"]) == (order["id"], "paid", 1234)
    assert data["out_trade_no"] == order["out_trade_no"]
    assert message.headers["content-type"] == "application/json"
    # the events API shows the same event with the delivery and its one attempt
    detail = await hooked.recorded(body["id"], 1)
    assert detail["data"] == data
    [delivery] = detail["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
    assert delivery["history"][0]["status_code"] == 200
    assert delivery["history"][0]["response"] == "ok"
    assert hooked.secret not in str(detail)


async def test_third_attempt_after_two_failures_has_the_same_id(hooked: HookedShop) -> None:
    hooked.receiver.script[:] = [(500, {}), (503, {})]
    order = await hooked.create_order()
    await hooked.pay(order)
    messages = await hooked.arrived(3)
    assert [m.answered for m in messages] == [500, 503, 200]
    assert len({m.id for m in messages}) == 1
    assert len({m.body for m in messages}) == 1  # the same bytes every time
    check_signed(messages, hooked.secret)
    detail = await hooked.recorded(messages[0].id, 3)
    [delivery] = detail["deliveries"]
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["history"]] == [500, 503, 200]
    await asyncio.sleep(0.5)
    assert len(hooked.receiver.received) == 3  # nothing after the 2xx


async def test_410_disables_the_endpoint(hooked: HookedShop) -> None:
    hooked.receiver.script[:] = [(410, {})]
    first = await hooked.create_order()
    await hooked.pay(first)
    [gone] = await hooked.arrived(1)
    check_signed([gone], hooked.secret)
    await hooked.recorded(gone.id, 1)
    listed = (await hooked.http.get("/api/webhook-endpoints", headers=AUTH)).json()["items"]
    [endpoint] = listed
    assert endpoint["disabled_reason"] == "410 Gone"
    second = await hooked.create_order()
    await hooked.pay(second)
    await asyncio.sleep(0.6)
    assert len(hooked.receiver.received) == 1  # no retry, nothing new
    detail = (await hooked.http.get(f"/api/events/{gone.id}", headers=AUTH)).json()
    assert detail["deliveries"][0]["status"] == "failed"
    # the events API still has both payments for catching up
    page = (await hooked.http.get("/api/events", headers=AUTH)).json()
    assert [e["data"]["id"] for e in page["items"]] == [first["id"], second["id"]]


async def test_retry_after_is_honoured(hooked: HookedShop) -> None:
    hooked.receiver.script[:] = [(429, {"Retry-After": "2"}), (503, {"Retry-After": "1"})]
    order = await hooked.create_order()
    started = time.monotonic()
    await hooked.pay(order)
    messages = await hooked.arrived(3, within=30)
    gaps = [b.at - a.at for a, b in itertools.pairwise(messages)]
    # the schedule says 0.2 s; the receiver asked for 2 s, then 1 s
    assert gaps[0] >= 1.9
    assert gaps[1] >= 0.9
    assert messages[0].at - started < 5
    check_signed(messages, hooked.secret)


async def test_an_orders_events_arrive_in_order(hooked: HookedShop) -> None:
    hooked.receiver.script[:] = [(500, {})]  # the first (order.paid) fails once
    order = await hooked.create_order(1000)
    await hooked.pay(order)
    response = await hooked.http.post(
        f"/api/orders/{order['id']}/refunds",
        json={"amount": 1000},
        headers={**AUTH, "Idempotency-Key": "r1"},
    )
    assert response.status_code == 201, response.text
    hooked.sim.clock.advance(1)
    await hooked.sim.deliver_due_notifications()
    messages = await hooked.arrived(4)
    check_signed(messages, hooked.secret)
    types = [m.json["type"] for m in messages]
    assert types == ["order.paid", "order.paid", "refund.succeeded", "order.refunded"]
    refund = messages[2].json["data"]
    assert (refund["order_id"], refund["amount"]) == (order["id"], 1000)
    assert refund["status"] == "success"
    assert messages[3].json["data"]["refunded_amount"] == 1000


async def test_rotation_signs_with_both_secrets(hooked: HookedShop) -> None:
    created = await hooked.http.post(
        "/api/webhook-endpoints",
        json={"url": hooked.receiver.url, "event_types": ["order.closed"]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    old = endpoint["secret"]
    assert old.startswith("whsec_")
    shown = await hooked.http.get(f"/api/webhook-endpoints/{endpoint['id']}", headers=AUTH)
    assert "secret" not in shown.json()
    rotated = await hooked.http.post(
        f"/api/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"grace_seconds": 3600},
        headers=AUTH,
    )
    new = rotated.json()["secret"]
    assert new != old
    order = await hooked.create_order()
    closed = await hooked.http.post(f"/api/orders/{order['id']}/close", headers=AUTH)
    assert closed.status_code == 200, closed.text
    # two endpoints want order.closed: the settings one and the new one
    messages = await hooked.arrived(2)
    for_new = [m for m in messages if len(m.headers["webhook-signature"].split(" ")) == 2]
    [message] = for_new
    check_signed([message], old)
    check_signed([message], new)
    assert (await hooked.http.delete(f"/api/webhook-endpoints/{endpoint['id']}",
                                     headers=AUTH)).status_code == 204  # fmt: skip
    again = await hooked.http.get(f"/api/webhook-endpoints/{endpoint['id']}", headers=AUTH)
    assert again.status_code == 404


async def test_no_redirects_are_followed(hooked: HookedShop) -> None:
    hooked.receiver.script[:] = [(302, {"Location": hooked.receiver.url + "/elsewhere"})]
    order = await hooked.create_order()
    await hooked.pay(order)
    messages = await hooked.arrived(2)
    assert [m.answered for m in messages] == [302, 200]  # retried, never redirected
    assert all(not m.headers.get("host", "").endswith("/elsewhere") for m in messages)


async def test_unauthenticated_calls_are_refused(hooked: HookedShop) -> None:
    for method, path in (("GET", "/api/events"), ("GET", "/api/webhook-endpoints"),
                         ("POST", "/api/events/evt_x/resend")):  # fmt: skip
        response = await hooked.http.request(method, path)
        assert response.status_code == 401, path
    assert isinstance(hooked.http, httpx.AsyncClient)


async def test_a_hanging_endpoint_does_not_hold_up_the_others(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A second endpoint reads each request and never answers (until the 15 s timeout): it
    holds at most ``webhook_endpoint_concurrency`` of the worker's slots, so the healthy
    endpoint hears of every payment at once. (With no per-endpoint limit the hanging one
    fills all six slots after a few payments, and the rest wait for its timeouts.)"""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.readuntil(b"\r\n\r\n")

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async for shop in open_hooked(tmp_path, receiver, webhook_concurrency=6,
                                      webhook_endpoint_concurrency=2):  # fmt: skip
            url = f"http://127.0.0.1:{port}/hook"
            created = await shop.http.post(
                "/api/webhook-endpoints", headers=AUTH, json={"url": url}
            )
            assert created.status_code == 201, created.text
            for n in range(10):
                await shop.pay(await shop.create_order(100 + n, "Tea"))
            check_signed(await shop.arrived(10, within=8), shop.secret)
            assert len(held) == 2  # the hanging endpoint's two slots, no more
            for writer in held:  # its deliveries end now (no answer), not at the timeout
                writer.close()
    finally:
        for writer in held:
            writer.close()
        server.close()
