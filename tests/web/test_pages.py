"""The demo shop page and the checkout page (the HTML contract the browser test relies on)."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from scanpay.web.app import create_app
from tests.web.conftest import SettingsFactory, Shop


async def test_shop_page_has_a_buy_button_that_leads_to_checkout(shop: Shop) -> None:
    page = await shop.http.get("/")
    assert page.status_code == 200
    assert '<button id="buy"' in page.text
    assert 'action="/shop/buy"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    bought = await shop.http.post("/shop/buy")
    assert bought.status_code == 303
    location = bought.headers["location"]
    assert re.fullmatch(r"/checkout/ord_[A-Za-z0-9_-]{22}", location)
    checkout = await shop.http.get(location)
    assert checkout.status_code == 200


async def test_checkout_page_contract(shop: Shop) -> None:
    order = await shop.create_order(1999, "Green <tea> & biscuits")
    page = await shop.http.get(f"/checkout/{order['id']}")
    html = page.text
    assert "¥19.99" in html
    assert "Green &lt;tea&gt; &amp; biscuits" in html
    assert re.search(r'<div id="qr"[^>]*>\s*<svg', html)
    assert re.search(r'<span id="order-status" data-status="pending"', html)
    href = f"http://sim.test/sim/scan?code_url={quote(order['code_url'], safe='')}"
    assert f'id="phone-link" href="{href.replace("&", "&amp;")}"' in html
    tag = re.search(r'<script src="(/static/checkout\.[0-9a-f]{10}\.js)"></script>', html)
    assert tag is not None
    script = await shop.http.get(tag.group(1))
    assert script.status_code == 200
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "Last-Event-ID" in script.text


async def test_checkout_page_shows_paid(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    html = (await shop.http.get(f"/checkout/{order['id']}")).text
    assert re.search(r'<span id="order-status" data-status="paid"[^>]*>\s*支付成功\s*</span>', html)


async def test_no_phone_link_without_simulator(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop.test"
    ) as http:
        page = await http.get("/")
        missing = await http.get("/checkout/ord_" + "B" * 22)
    await app.state.scanpay.aclose()
    assert "phone-link" not in page.text
    assert missing.status_code == 404
