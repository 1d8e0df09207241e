"""The whole flow a shopper sees, in real headless Chromium against `scanpay demo`."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import ClockedShop, Demo

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_buy_scan_pay_and_page_turns_paid_without_reload(demo: Demo, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800}, locale="en-US")
    page = context.new_page()
    page.goto(demo.shop_url + "/")
    page.click("#buy")
    page.wait_for_url("**/checkout/**")
    order_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    status = page.locator("#order-status")
    expect(status).to_have_attribute("data-status", "pending")

    # The QR drawn on the page decodes to the order's code_url.
    shot = page.locator("#qr").screenshot()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))
    assert len(decoded) == 1
    order = httpx.get(f"{demo.shop_url}/api/orders/{order_id}", timeout=5).json()
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert decoded[0].text == order["code_url"]
    assert order["status"] == "pending"

    # A marker that a reload or navigation would wipe out.
    page.evaluate("window.__sameDocument = 'yes'")

    # The shopper "scans" on the simulator's phone page and confirms.
    phone_href = page.locator("#phone-link").get_attribute("href")
    assert phone_href is not None
    phone = context.new_page()
    phone.goto(phone_href)
    phone.click("#pay")
    expect(phone.locator("#result")).to_contain_text("Paid")

    expect(status).to_have_attribute("data-status", "paid", timeout=15_000)
    expect(status).to_contain_text("Paid")
    assert page.evaluate("window.__sameDocument") == "yes"
    final = httpx.get(f"{demo.shop_url}/api/orders/{order_id}", timeout=5).json()
    assert final["status"] == "paid"

    # Paid: nothing left to scan, a prominent "Paid", and the way back to the shop.
    expect(page.locator("#qr")).to_be_hidden()
    assert page.locator("#qr svg").count() == 0
    expect(page.locator("#phone-link")).to_be_hidden()
    expect(page.locator("#paid-banner")).to_be_visible()
    back = page.locator("#return-link")
    expect(back).to_be_visible()
    expect(back).to_have_text("Return now")
    assert final["return_url"] == demo.shop_url + "/"
    back.click()
    page.wait_for_url(demo.shop_url + "/")
    expect(page.locator("#buy")).to_be_visible()
    context.close()


def test_expired_qr_is_replaced_on_the_open_page(
    clocked_shop: ClockedShop, browser: Browser
) -> None:
    """The QR's payment window ends while the page is open (the shared clock jumps past it):
    the reconciler closes the attempt at the simulator, the stream says so, and the page
    fetches the replacement QR and phone link in place; the new code can be paid."""
    context = browser.new_context(viewport={"width": 1100, "height": 800}, locale="en-US")
    page = context.new_page()
    page.goto(clocked_shop.shop_url + "/")
    page.click("#buy")
    page.wait_for_url("**/checkout/**")
    order_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    api = f"{clocked_shop.shop_url}/api/orders/{order_id}"
    first = httpx.get(api, timeout=5).json()
    qr = page.locator("#qr")
    expect(qr).to_have_attribute("data-out-trade-no", first["out_trade_no"])
    page.evaluate("window.__sameDocument = 'yes'")

    clocked_shop.advance(15 * 60 + 5)  # past the attempt's payment window

    expect(qr).not_to_have_attribute("data-out-trade-no", first["out_trade_no"], timeout=15_000)
    expect(qr).not_to_have_class(re.compile("qr-stale"))
    assert page.evaluate("window.__sameDocument") == "yes"
    fresh = httpx.get(api, timeout=5).json()
    assert fresh["status"] == "pending"
    assert fresh["out_trade_no"] == qr.get_attribute("data-out-trade-no")
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
    assert [d.text for d in decoded] == [fresh["code_url"]]
    phone_href = page.locator("#phone-link").get_attribute("href")
    assert phone_href is not None
    assert phone_href.endswith(quote(fresh["code_url"], safe=""))

    phone = context.new_page()
    phone.goto(phone_href)
    phone.click("#pay")
    expect(phone.locator("#result")).to_contain_text("Paid")
    expect(page.locator("#order-status")).to_have_attribute("data-status", "paid", timeout=15_000)
    expect(qr).to_be_hidden()
    context.close()
