"""Active queries and their answers in an order's console timeline (issue 12, item 3), over
HTTP in-process: the service asks the simulator (ASGI, its own fault injection), and the
timeline shows each query (who asked: the console, the reconciler, the checkout page, the
shop's close; API version, WeChat's trade_state or the error, the transaction_id) with what
scanpay made of it, in zh-CN and English."""

from __future__ import annotations

import re

import httpx

from scanpay.simulator import PayOutcome
from scanpay.store.query_log import SqlQueryLog
from scanpay.web.console.i18n import load_translators
from tests.web.conftest import SHOP_KEY
from tests.web.lifecycle_kit import set_faults
from tests.web.test_console import CSRF, Console, console, sign_in  # noqa: F401

AUTH = {"Authorization": f"Bearer {SHOP_KEY}"}


def query_entries(html: str) -> list[str]:
    """The text of each active-query entry of an order's timeline, oldest first."""
    items = re.findall(
        r'<li class="entry entry-wechat_query" data-kind="wechat_query">(.*?)</li>', html, re.S
    )
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", item)).strip() for item in items]


async def requery(http: httpx.AsyncClient, order_id: str) -> httpx.Response:
    page = await http.get(f"/console/orders/{order_id}")
    token = CSRF.search(page.text)
    assert token is not None
    return await http.post(f"/console/orders/{order_id}/query", data={"csrf_token": token.group(1)})


async def test_every_active_query_and_its_answer_is_in_the_timeline(console: Console) -> None:  # noqa: F811
    zh, en = load_translators()["zh-CN"], load_translators()["en"]
    async with console.client() as http:
        created = await http.post(
            "/api/orders", json={"amount": 1234, "description": "Tea"}, headers=AUTH
        )
        assert created.status_code == 201, created.text
        order = created.json()
        order_id = order["id"]
        await sign_in(http, "sam")  # support: may re-query

        # 1. the console's "re-query now": WeChat answers NOTPAY, nothing changes
        done = await requery(http, order_id)
        assert done.status_code == 303, done.text
        # 2. the next WeChat call fails (the simulator's SYSTEMERROR): the error is recorded
        set_faults(console.sim, "system_error=1:1@api")
        failed = await requery(http, order_id)
        assert failed.status_code >= 400
        console.sim.faults.clear()
        # 3. the shopper pays, the notification never arrives; the reconciler's look finds it
        paid = await console.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
        assert paid.paid
        console.clock.advance(11)  # past the first scheduled look
        result = await console.app.state.lifecycle.reconciler.run_once()
        assert result.claimed == 1
        status = await http.get(f"/api/orders/{order_id}", headers=AUTH)
        assert status.json()["status"] == "paid"

        page = await http.get(f"/console/orders/{order_id}", headers={"Accept-Language": "zh"})
        assert page.status_code == 200
        entries = query_entries(page.text)
        assert len(entries) == 3, entries
        asked, broken, found = entries
        for text in entries:
            assert paid.out_trade_no in text
            assert zh.gettext("api") in text
            assert "v2" in text
        assert zh.gettext("console") in asked
        assert zh.gettext("trade_state") in asked
        assert "NOTPAY" in asked
        assert zh.gettext("noted") in asked
        assert paid.transaction_id not in asked
        assert zh.gettext("console") in broken
        assert "SYSTEMERROR" in broken
        assert zh.gettext("query_failed") in broken
        assert "NOTPAY" not in broken
        assert zh.gettext("reconciler") in found
        assert "SUCCESS" in found
        assert paid.transaction_id in found
        assert zh.gettext("applied") in found
        assert zh.gettext("wechat_query") != "wechat_query"  # a real translation was shown
        assert zh.gettext("wechat_query") in page.text

        english = await http.get(f"/console/orders/{order_id}", headers={"Accept-Language": "en"})
        texts = query_entries(english.text)
        assert len(texts) == 3
        assert en.gettext("asked_by") == "Asked by"
        assert "Asked by console" in texts[0]
        assert "Trade state NOTPAY" in texts[0]
        assert "Asked by reconciler" in texts[2]
        assert "Query failed" in texts[1]

    # 4. the checkout page finds an expired QR code of an order paid meanwhile: its close is
    # refused (ORDERPAID) and the checkout's query settles it
    async with console.client() as http:
        other = await http.post(
            "/api/orders", json={"amount": 500, "description": "Cake"}, headers=AUTH
        )
        assert other.status_code == 201, other.text
        second = other.json()
        late = await console.sim.pay(code_url=second["code_url"], outcome=PayOutcome.SUCCESS)
        console.clock.advance(16 * 60)  # past the payment window
        qr = await http.get(f"/checkout/{second['id']}/qr")
        assert qr.status_code == 200, qr.text
        await sign_in(http, "vic")
        page = await http.get(f"/console/orders/{second['id']}", headers={"Accept-Language": "en"})
        (checked,) = query_entries(page.text)
        assert "Asked by checkout" in checked
        assert "Trade state SUCCESS" in checked
        assert late.transaction_id in checked
        assert late.out_trade_no in checked
        assert en.gettext("applied") in checked

        # 5. the shop closes an unpaid order: WeChat's answer to the confirming query is kept
        third = await http.post(
            "/api/orders", json={"amount": 700, "description": "Jam"}, headers=AUTH
        )
        assert third.status_code == 201, third.text
        closed = await http.post(f"/api/orders/{third.json()['id']}/close", headers=AUTH)
        assert closed.status_code == 200, closed.text
        page = await http.get(
            f"/console/orders/{third.json()['id']}", headers={"Accept-Language": "en"}
        )
        (confirming,) = query_entries(page.text)
        assert "Asked by shop API" in confirming
        assert "Trade state CLOSED" in confirming

    # one row per query, stored as the timeline shows them
    log = SqlQueryLog(
        console.app.state.scanpay.store.engine, console.app.state.scanpay.store.run_blocking
    )
    rows = log.for_order(order_id)
    assert [(r.asker.value, r.trade_state, r.verdict) for r in rows] == [
        ("console", "NOTPAY", "noted"),
        ("console", None, None),
        ("reconciler", "SUCCESS", "applied"),
    ]
    assert rows[1].error is not None
    assert rows[1].error.startswith("SYSTEMERROR")
