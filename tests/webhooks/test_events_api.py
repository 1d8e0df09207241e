"""GET /api/events: a shop that was down catches up from the last event it saw; pages,
type filters, alerts, one event with its attempts, resend, and refusals."""

from __future__ import annotations

from tests.webhooks.conftest import AUTH, HookedShop
from tests.webhooks.receiver import check_signed


async def test_catch_up_after_being_down(hooked: HookedShop) -> None:
    first = await hooked.create_order(101)
    await hooked.pay(first)
    [seen] = await hooked.arrived(1)
    last_seen = seen.id
    hooked.receiver.script[:] = [(503, {})] * 100  # the shop goes down
    missed = []
    for amount in (102, 103, 104):
        order = await hooked.create_order(amount)
        await hooked.pay(order)
        missed.append(order["id"])
    closed = await hooked.create_order(105)
    await hooked.http.post(f"/api/orders/{closed['id']}/close", headers=AUTH)
    await hooked.arrived(5)
    # back up: everything after the last event it processed, oldest first
    page = (await hooked.http.get(f"/api/events?after={last_seen}", headers=AUTH)).json()
    assert [(e["type"], e["data"]["id"]) for e in page["items"]] == [
        *[("order.paid", oid) for oid in missed],
        ("order.closed", closed["id"]),
    ]
    assert page["has_more"] is False
    again = await hooked.http.get(f"/api/events?after={page['next_cursor']}", headers=AUTH)
    assert again.json() == {"items": [], "next_cursor": page["next_cursor"], "has_more": False}
    # paging two at a time gives the same list; the type filter narrows it
    walked, cursor = [], "0"
    while True:
        got = (await hooked.http.get(f"/api/events?after={cursor}&limit=2", headers=AUTH)).json()
        walked += [e["id"] for e in got["items"]]
        cursor = got["next_cursor"]
        if not got["has_more"]:
            break
    assert walked == [seen.id, *[e["id"] for e in page["items"]]]
    paid_only = (await hooked.http.get("/api/events?type=order.paid", headers=AUTH)).json()
    assert len(paid_only["items"]) == 4
    # each listed event is the body that was (or would have been) delivered
    delivered = {m.id: m.json for m in hooked.receiver.received}
    for event in page["items"]:
        if event["id"] in delivered:
            assert delivered[event["id"]]["data"] == event["data"]


async def test_alerts_and_refusals(hooked: HookedShop) -> None:
    store = hooked.context.store
    await store.record_alert(None, "unknown_out_trade_no", {"out_trade_no": "sp0000000000"})
    hooked.webhooks.wake()
    [message] = await hooked.arrived(1)
    check_signed([message], hooked.secret)
    assert message.json["type"] == "alert.raised"
    assert message.json["data"]["reason"] == "unknown_out_trade_no"
    for query, code in (("after=nope", "INVALID_CURSOR"), ("type=order.lost", "INVALID_TYPE"),
                        ("limit=1000", "INVALID_REQUEST")):  # fmt: skip
        response = await hooked.http.get(f"/api/events?{query}", headers=AUTH)
        assert response.status_code == 422, query
        assert response.json()["error"]["code"] == code
    unknown = "evt_" + "A" * 22
    for path in (f"/api/events/{unknown}", f"/api/events?after={unknown}"):
        assert (await hooked.http.get(path, headers=AUTH)).status_code == 404
    resend = await hooked.http.post(f"/api/events/{unknown}/resend", headers=AUTH)
    assert resend.status_code == 404


async def test_resend(hooked: HookedShop) -> None:
    order = await hooked.create_order()
    await hooked.pay(order)
    [first] = await hooked.arrived(1)
    response = await hooked.http.post(f"/api/events/{first.id}/resend", headers=AUTH)
    assert response.status_code == 202
    messages = await hooked.arrived(2)
    assert messages[1].id == first.id
    assert messages[1].body == first.body
    check_signed(messages, hooked.secret)
    detail = await hooked.recorded(first.id, 2)
    assert detail["deliveries"][0]["status"] == "delivered"
    assert len(detail["deliveries"][0]["history"]) == 2
