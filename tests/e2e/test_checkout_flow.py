"""The whole flow a shopper sees, in real headless Chromium against `scanpay demo`."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Demo

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_buy_scan_pay_and_page_turns_paid_without_reload(demo: Demo, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
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

    screenshot = page.screenshot(full_page=True)
    if os.environ.get("SCANPAY_WRITE_SCREENSHOTS") == "1":
        (DOCS / "checkout.png").write_bytes(screenshot)

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
    if os.environ.get("SCANPAY_WRITE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / "checkout-paid.png"), full_page=True)
    context.close()
