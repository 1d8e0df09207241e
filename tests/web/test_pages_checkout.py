"""The checkout page's faces (pending, paid, closed, expired), "Back to shop", and the QR
endpoint the page's script uses to swap an expired QR for a new one without a reload."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from tests.web.conftest import SettingsFactory, Shop
from tests.web.lifecycle_kit import rig

WINDOW = 15 * 60
SHOP_PAGE = "https://shop.example/orders/42?x=1&y=2"


def hidden(html: str, element_id: str) -> bool:
    tag = re.search(rf'<[a-z]+ id="{element_id}"[^>]*>', html)
    assert tag is not None, element_id
    return re.search(r"\shidden[\s>]", tag.group(0)) is not None


async def create(shop: Shop, **extra: Any) -> dict[str, Any]:
    response = await shop.http.post(
        "/api/orders", json={"amount": 1999, "description": "Tea", **extra}, headers=shop.auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_pending_page_shows_the_qr_and_hides_outcomes(shop: Shop) -> None:
    order = await create(shop, return_url=SHOP_PAGE)
    html = (await shop.http.get(f"/checkout/{order['id']}")).text
    assert re.search(r'<div id="qr"[^>]*>\s*<svg', html)
    assert f'data-out-trade-no="{order["out_trade_no"]}"' in html
    expires = re.search(r'data-expires-in-ms="(\d+)"', html)
    assert expires is not None
    assert 0 < int(expires.group(1)) <= WINDOW * 1000
    assert not hidden(html, "pay-panel")
    for element in ("paid-banner", "closed-banner", "expired-banner", "new-qr"):
        assert hidden(html, element), element
    way_back = SHOP_PAGE.replace("&", "&amp;")
    assert f'<a id="cancel-link" href="{way_back}"' in html


async def test_paid_page_drops_the_qr_and_links_back_to_the_shop(shop: Shop) -> None:
    order = await create(shop, return_url=SHOP_PAGE)
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    html = (await shop.http.get(f"/checkout/{order['id']}?lang=en")).text
    assert "<svg" not in html
    assert hidden(html, "pay-panel")
    assert not hidden(html, "paid-banner")
    assert hidden(html, "closed-banner")
    assert re.search(r'<span id="order-status" data-status="paid"[^>]*>\s*Paid\s*</span>', html)
    link = re.search(r'<a id="return-link"[^>]*href="([^"]+)"[^>]*>Return now</a>', html)
    assert link is not None
    assert link.group(1) == SHOP_PAGE.replace("&", "&amp;")


async def test_closed_page_says_so_without_a_qr(shop: Shop) -> None:
    order = await create(shop)
    closed = await shop.http.post(f"/api/orders/{order['id']}/close", headers=shop.auth)
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    html = (await shop.http.get(f"/checkout/{order['id']}?lang=en")).text
    assert "<svg" not in html
    assert hidden(html, "pay-panel")
    assert hidden(html, "paid-banner")
    assert not hidden(html, "closed-banner")
    assert "No money was taken" in html
    assert 'id="return-link"' not in html  # no return_url given
    state = (await shop.http.get(f"/checkout/{order['id']}/qr")).json()
    assert state["status"] == "closed"
    assert state["qr_svg"] is None
    assert state["code_url"] is None
    assert state["phone_url"] is None


async def test_qr_endpoint_returns_the_current_code(shop: Shop) -> None:
    order = await create(shop)
    response = await shop.http.get(
        f"/checkout/{order['id']}/qr", headers={"Accept-Language": "en-US,en;q=0.8"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    state = response.json()
    assert state["status"] == "pending"
    assert state["status_text"] == "Waiting for payment"
    assert state["out_trade_no"] == order["out_trade_no"]
    assert state["code_url"] == order["code_url"]
    assert state["qr_svg"].startswith("<svg")
    assert (
        state["phone_url"]
        == f"http://sim.test/sim/scan?code_url={quote(order['code_url'], safe='')}"
    )
    assert 0 < state["expires_in_ms"] <= WINDOW * 1000
    missing = await shop.http.get("/checkout/ord_" + "B" * 22 + "/qr")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_demo_shop_orders_return_to_the_shop(shop: Shop) -> None:
    bought = await shop.http.post("/shop/buy")
    order_id = bought.headers["location"].rsplit("/", 1)[-1]
    order = (await shop.http.get(f"/api/orders/{order_id}")).json()
    assert order["return_url"] == "http://shop.test/"


async def test_expired_qr_is_replaced_through_the_qr_endpoint(
    make_settings: SettingsFactory,
) -> None:
    async with rig(make_settings, simulator_phone_url="http://sim.test/sim/scan") as r:
        order = await r.create_order()
        r.clock.advance(WINDOW - 60)
        before = (await r.http.get(f"/checkout/{order['id']}/qr")).json()
        assert before["out_trade_no"] == order["out_trade_no"]
        assert 59_000 <= before["expires_in_ms"] <= 60_000

        r.clock.advance(61)  # the page's timer fires a second after the known expiry
        state = (await r.http.get(f"/checkout/{order['id']}/qr")).json()
        assert state["status"] == "pending"
        assert state["out_trade_no"] != order["out_trade_no"]
        assert state["code_url"] not in (None, order["code_url"])
        assert state["qr_svg"].startswith("<svg")
        assert quote(state["code_url"], safe="") in state["phone_url"]
        assert 0 < state["expires_in_ms"] <= WINDOW * 1000
        fresh = await r.order(order["id"])
        assert (fresh["out_trade_no"], fresh["code_url"]) == (
            state["out_trade_no"],
            state["code_url"],
        )
        # the stream told any open page about it: the old attempt closed, a new one ready
        events = r.events(order["id"])
        assert events[-3:] == ["attempt_closed", "created", "qr_ready"]
        # asking again gives the same code (no second replacement)
        again = (await r.http.get(f"/checkout/{order['id']}/qr")).json()
        assert again["out_trade_no"] == state["out_trade_no"]
        await r.sim.pay(code_url=state["code_url"])
        await r.sim.deliver_due_notifications()
        paid = (await r.http.get(f"/checkout/{order['id']}/qr")).json()
        assert paid["status"] == "paid"
        assert paid["qr_svg"] is None
