"""The status stream: current state first, ids, resumption with Last-Event-ID, end on settle."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.web.conftest import Shop


def parse_sse(text: str) -> list[tuple[int, dict[str, Any]]]:
    messages = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "data" in fields:
            messages.append((int(fields["id"]), json.loads(fields["data"])))
    return messages


async def test_stream_of_a_paid_order_sends_state_and_ends(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    response = await shop.http.get(f"/api/orders/{order['id']}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    [(seq, snapshot)] = parse_sse(response.text)
    assert snapshot == {"order_id": order["id"], "seq": seq, "type": "snapshot", "status": "paid"}


async def test_resume_with_last_event_id_replays_what_came_after(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    everything = await shop.http.get(
        f"/api/orders/{order['id']}/events", headers={"Last-Event-ID": "0"}
    )
    messages = parse_sse(everything.text)
    assert [m["type"] for _, m in messages] == ["created", "qr_ready", "paid"]
    assert [seq for seq, _ in messages] == [1, 2, 3]
    assert messages[-1][1]["status"] == "paid"
    tail = await shop.http.get(f"/api/orders/{order['id']}/events", headers={"Last-Event-ID": "2"})
    assert [m["type"] for _, m in parse_sse(tail.text)] == ["paid"]


async def test_live_stream_sees_the_payment_and_closes(shop: Shop) -> None:
    order = await shop.create_order()
    stream = asyncio.create_task(shop.http.get(f"/api/orders/{order['id']}/events"))
    await asyncio.sleep(0.05)
    assert not stream.done()  # pending: the stream stays open
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    response = await asyncio.wait_for(stream, timeout=10)
    assert len(shop.context.hub) == 0  # the finished stream left nothing behind
    messages = parse_sse(response.text)
    assert messages[0][1]["type"] == "snapshot"
    assert messages[0][1]["status"] == "pending"
    assert messages[-1][1] == {
        "order_id": order["id"],
        "seq": messages[-1][0],
        "type": "paid",
        "status": "paid",
    }


async def test_alerts_are_not_public(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.context.store.record_alert(order["id"], "amount_mismatch", {"reported_amount": 1})
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    response = await shop.http.get(
        f"/api/orders/{order['id']}/events", headers={"Last-Event-ID": "0"}
    )
    assert "alert" not in [m["type"] for _, m in parse_sse(response.text)]
    assert "amount_mismatch" not in response.text
