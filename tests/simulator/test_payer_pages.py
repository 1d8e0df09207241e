"""The payer over HTTP: ``POST /sim/pay``, the phone page, the ledger views."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from scanpay.client.v2 import V2Client
from scanpay.simulator import Simulator
from scanpay.wechat.states import TradeState

from .conftest import order


async def test_phone_page_pay(sim: Simulator, client: V2Client, raw: httpx.AsyncClient) -> None:
    created = await client.create_native_order(order())
    page = await raw.get(f"/sim/scan?code_url={quote(created.code_url, safe='')}")
    assert page.status_code == 200
    for needle in ('id="pay"', 'id="cancel"', "¥12.50", "Green tea, 250 g", sim.merchant_name):
        assert needle in page.text
    assert sim.scan_url(created.code_url).endswith(page.url.path + "?" + page.url.query.decode())

    done = await raw.post(
        "/sim/scan", data={"code_url": created.code_url, "outcome": "success", "lang": "en"}
    )
    assert done.status_code == 200
    assert '<h1 id="result" class="ok">Paid</h1>' in done.text
    assert (await client.query_order(out_trade_no="order-0001")).trade_state is TradeState.SUCCESS

    again = await raw.get(f"/sim/scan?code_url={quote(created.code_url, safe='')}&lang=en")
    assert again.status_code == 409
    # neutral, not a failure
    assert '<h1 id="result" class="neutral">Already paid</h1>' in again.text
    assert "already paid" in again.text
    chinese = await raw.get(f"/sim/scan?code_url={quote(created.code_url, safe='')}")
    assert '<html lang="zh-CN">' in chinese.text
    assert '<h1 id="result" class="neutral">订单已支付</h1>' in chinese.text


async def test_phone_page_cancel(client: V2Client, raw: httpx.AsyncClient) -> None:
    created = await client.create_native_order(order())
    done = await raw.post(
        "/sim/scan",
        data={"code_url": created.code_url, "outcome": "cancel"},
        headers={"Accept-Language": "en-GB,en;q=0.9"},
    )
    assert 'id="result"' in done.text
    assert "cancelled" in done.text
    assert (await client.query_order(out_trade_no="order-0001")).trade_state is TradeState.NOTPAY


async def test_phone_page_unknown_code(raw: httpx.AsyncClient) -> None:
    page = await raw.get("/sim/scan?code_url=weixin%3A%2F%2Fnothing")
    assert page.status_code == 404
    assert 'id="result"' in page.text
    assert (await raw.get("/sim/scan")).status_code == 400


async def test_phone_page_escapes_merchant_text(client: V2Client, raw: httpx.AsyncClient) -> None:
    created = await client.create_native_order(order(body="<script>alert(1)</script>"))
    page = await raw.get(f"/sim/scan?code_url={quote(created.code_url, safe='')}")
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_sim_pay_answers(client: V2Client, raw: httpx.AsyncClient) -> None:
    await client.create_native_order(order())
    short = await raw.post(
        "/sim/pay", json={"out_trade_no": "order-0001", "outcome": "insufficient_balance"}
    )
    assert short.status_code == 200
    assert short.json()["paid"] is False
    assert short.json()["trade_state"] == "NOTPAY"
    ok = await raw.post("/sim/pay", json={"out_trade_no": "order-0001"})
    assert ok.json()["paid"] is True
    twice = await raw.post("/sim/pay", json={"out_trade_no": "order-0001"})
    assert twice.status_code == 409
    assert twice.json() == {
        "ok": False,
        "error": "ORDER_PAID",
        "message": "the order is already paid",
    }
    detail = (await raw.get("/sim/orders/order-0001")).json()
    assert [p["outcome"] for p in detail["payments"]] == [
        "insufficient_balance",
        "success",
        "success (refused)",
    ]
    assert len((await raw.get("/sim/orders")).json()) == 1
    assert (await raw.get("/sim/orders/nothing")).status_code == 404
    overview = await raw.get("/sim")
    assert "order-0001" in overview.text


@pytest.mark.parametrize(
    ("body", "status"),
    [({"out_trade_no": "missing-1"}, 404), ({}, 400), ({"code_url": 5}, 400),
     ({"out_trade_no": "order-0001", "outcome": "dance"}, 400),
     ({"out_trade_no": "order-0001", "code_url": "weixin://x"}, 400)],
)  # fmt: skip
async def test_sim_pay_refusals(raw: httpx.AsyncClient, body: object, status: int) -> None:
    response = await raw.post("/sim/pay", json=body)
    assert response.status_code == status
    assert response.json()["ok"] is False


async def test_sim_pay_needs_json(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/sim/pay", content=b"<xml/>")
    assert response.status_code == 400


async def test_phone_page_other_outcomes(client: V2Client, raw: httpx.AsyncClient) -> None:
    created = await client.create_native_order(order())
    page = await raw.get(f"/sim/scan?code_url={quote(created.code_url, safe='')}&lang=en")
    assert '<html lang="en">' in page.text
    for needle in ('id="insufficient-balance"', 'id="user-paying"', "Order order-0001"):
        assert needle in page.text
    short = await raw.post(
        "/sim/scan", data={"code_url": created.code_url, "outcome": "insufficient_balance"}
    )
    assert 'class="bad"' in short.text
    assert (await client.query_order(out_trade_no="order-0001")).trade_state is TradeState.NOTPAY
    slow = await raw.post(
        "/sim/scan", data={"code_url": created.code_url, "outcome": "user_paying"}
    )
    assert 'id="result"' in slow.text
    queried = await client.query_order(out_trade_no="order-0001")
    assert queried.trade_state is TradeState.USERPAYING
    overview = (await raw.get("/sim")).text
    assert "USERPAYING" in overview
    assert "No notifications yet." in overview
