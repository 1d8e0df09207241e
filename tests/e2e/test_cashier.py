"""The cashier a shopper sees, in real headless Chromium against one `scanpay demo` process.

Every state (unpaid, replaced, paid with receipt, expired, closed, 404, 502 at Buy) in zh-CN
and English, at 1280x800 and 390x844, checked by axe-core and by checks of their own (one
``main`` and one visible ``h1``, one live region, the QR's accessible name, contrast of every
text >= 4.5:1, no horizontal scroll, no English left on a zh-CN page). Then a network cut
through a loopback proxy, the page's own re-checks when the network or the tab comes back,
and last (it moves the shared clock) the demo's one clock.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import Demo, run_demo
from tests.e2e.proxy import LoopbackProxy

pytestmark = pytest.mark.browser
DOCS: Final = Path(__file__).resolve().parents[2] / "docs"
WINDOW: Final = 400  # --payment-window: the QR's life in seconds
DESKTOP: Final = ViewportSize(width=1280, height=800)
PHONE: Final = ViewportSize(width=390, height=844)
RETURN_SECONDS: Final = "5"  # SCANPAY_CHECKOUT_RETURN_SECONDS for the demo (8 by default)
SHOTS: Final = os.environ.get("SCANPAY_WRITE_SCREENSHOTS") == "1"

# Visible text (and accessible names) outside translate="no" / other-language parts, with
# long identifiers removed: what is left on a zh-CN page must hold no English word.
LEFTOVER_ENGLISH: Final = """() => {
  const skip = '[translate="no"], [lang]:not(html), script, style';
  const texts = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const parent = walker.currentNode.parentElement;
    if (parent && !parent.closest(skip) && parent.getClientRects().length) {
      texts.push(walker.currentNode.textContent);
    }
  }
  document.querySelectorAll('[aria-label], [alt], [title], [placeholder]').forEach((e) => {
    if (e.closest(skip)) { return; }
    ['aria-label', 'alt', 'title', 'placeholder'].forEach(
      (a) => texts.push(e.getAttribute(a) || ''));
  });
  return texts.join(' ').replace(/[A-Za-z0-9_-]{16,}/g, ' ').match(/[A-Za-z]{2,}/g) || [];
}"""

# The lowest contrast ratio of any visible text against its nearest opaque background.
LOWEST_CONTRAST: Final = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] >= 0.99)) { return c; }
    }
    return [255, 255, 255];
  };
  let worst = 21, where = '';
  document.querySelectorAll('body *').forEach((el) => {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('[aria-hidden="true"]')) { return; }
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || parseFloat(style.opacity) < 0.5) { return; }
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst) { worst = ratio; where = el.id || el.className || el.tagName; }
  });
  return [worst, String(where)];
}"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    env = {"SCANPAY_CHECKOUT_RETURN_SECONDS": RETURN_SECONDS}
    with run_demo(
        tmp_path_factory.mktemp("cashier"), "--payment-window", str(WINDOW), env=env
    ) as demo:
        yield demo


def new_page(browser: Browser, locale: str, viewport: ViewportSize) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=viewport, locale=locale)  # sets Accept-Language
    return context, context.new_page()


def check_page(
    page: Page, locale: str, where: str, *, live_regions: int = 0, flip: bool = True
) -> None:
    """What every page and state must satisfy, beyond its own content; with ``flip``, at the
    other viewport too (desktop <-> phone), so every state is seen at both sizes."""
    _check_page(page, locale, where, live_regions)
    if flip:
        size = page.viewport_size
        assert size is not None
        page.set_viewport_size(PHONE if size["width"] > PHONE["width"] else DESKTOP)
        try:
            _check_page(page, locale, f"{where}, other viewport", live_regions)
        finally:
            page.set_viewport_size(size)


def _check_page(page: Page, locale: str, where: str, live_regions: int) -> None:
    assert page.evaluate("document.documentElement.lang") == locale, where
    assert_accessible(page, f"{where} ({locale})")
    assert page.locator("main").count() == 1, where
    assert page.locator("h1:visible").count() == 1, where
    live = "[aria-live], [role=status], [role=alert], [role=log]"
    assert page.locator(live).count() == live_regions, where
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), where
    ratio, element = page.evaluate(LOWEST_CONTRAST)
    assert ratio >= 4.5, f"{where}: contrast {ratio:.2f} at {element}"
    if locale == "zh-CN":
        assert page.evaluate(LEFTOVER_ENGLISH) == [], where


def api_order(shop: Demo, page: Page) -> dict[str, Any]:
    order_id = page.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    body: dict[str, Any] = httpx.get(f"{shop.shop_url}/api/orders/{order_id}", timeout=5).json()
    return body


def buy(page: Page, shop_url: str) -> None:
    page.goto(shop_url + "/")
    page.click("#buy")
    page.wait_for_url("**/checkout/**")


def sim_pay(shop: Demo, code_url: str) -> dict[str, Any]:
    answer = httpx.post(f"{shop.simulator_url}/sim/pay", json={"code_url": code_url}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def shop_key(shop: Demo) -> str:
    return (shop.data_dir / "shop_api_key").read_text().strip()


@pytest.mark.parametrize(
    ("locale", "viewport"),
    [("zh-CN", DESKTOP), ("zh-CN", PHONE), ("en", DESKTOP), ("en", PHONE)],
    ids=["zh-desktop", "zh-phone", "en-desktop", "en-phone"],
)
def test_shop_unpaid_checkout_and_404(
    shop: Demo, browser: Browser, locale: str, viewport: ViewportSize
) -> None:
    context, page = new_page(browser, locale, viewport)
    page.goto(shop.shop_url + "/")
    check_page(page, locale, "shop", flip=False)
    label = "使用微信支付购买" if locale == "zh-CN" else "Buy with WeChat Pay"
    expect(page.locator("#buy")).to_have_text(label)
    page.click("#buy")
    page.wait_for_url("**/checkout/**")
    order = api_order(shop, page)
    expect(page.locator("#order-status")).to_have_attribute("data-status", "pending")
    # the order number the payer's WeChat shows, not the internal id; merchant; amount
    expect(page.locator("#out-trade-no")).to_have_text(order["out_trade_no"])
    assert order["id"] not in page.locator("main").inner_text()
    expect(page.locator("#merchant-name")).to_have_text("扫码付演示茶铺")
    expect(page.locator("#order-amount")).to_have_text("¥0.01" if locale == "zh-CN" else "CN¥0.01")
    # the countdown, from the server's remaining time
    countdown = page.locator("#countdown")
    expect(countdown).to_have_text(re.compile(r"0[56]:\d\d"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3000)  # it ticks
    instruction = page.locator("#qr-note")
    if locale == "zh-CN":
        expect(instruction).to_have_text("请使用微信扫一扫，扫描二维码支付")
    else:
        expect(instruction).to_contain_text("WeChat")
    # the QR has an accessible name that names the order
    qr = page.get_by_role("img", name=re.compile(re.escape(order["out_trade_no"])))
    expect(qr).to_be_visible()
    # a way back while unpaid; on a phone, the plain word and "copy the link"
    expect(page.locator("#cancel-link")).to_have_attribute("href", shop.shop_url + "/")
    small = page.locator("#small-screen")
    if viewport is PHONE:
        expect(small).to_be_visible()
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.click("#copy-link")
        expect(page.locator("#copy-result")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == page.url.split("?")[0]
    else:
        expect(small).to_be_hidden()
    check_page(page, locale, "checkout, unpaid", live_regions=1, flip=False)
    if viewport is PHONE:  # the whole phone range fits without horizontal scrolling
        for width in (360, 430):
            page.set_viewport_size(ViewportSize(width=width, height=800))
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size(PHONE)
    if SHOTS:  # README and docs: zh-CN desktop and phone, English desktop
        name = {"zh-CN": "checkout", "en": "checkout-en"}[locale]
        suffix = "-phone" if viewport is PHONE else ""
        if locale == "zh-CN" or viewport is DESKTOP:
            page.screenshot(path=str(DOCS / f"{name}{suffix}.png"), full_page=True)

    # 404: a page, not JSON, in the same language
    missing = page.goto(shop.shop_url + "/checkout/ord_" + "B" * 22)
    assert missing is not None
    assert missing.status == 404
    title = "订单不存在" if locale == "zh-CN" else "Order not found"
    expect(page.locator("h1")).to_have_text(title)
    check_page(page, locale, "404", flip=False)
    context.close()


@pytest.mark.parametrize(
    ("locale", "viewport"), [("zh-CN", DESKTOP), ("en", PHONE)], ids=["zh-desktop", "en-phone"]
)
def test_paid_receipt_focus_and_return(
    shop: Demo, browser: Browser, locale: str, viewport: ViewportSize
) -> None:
    context, page = new_page(browser, locale, viewport)
    buy(page, shop.shop_url)
    order = api_order(shop, page)
    page.evaluate("window.__sameDocument = 'yes'")

    # the simulator's phone page, in the same language; pay there
    phone = context.new_page()
    href = page.locator("#phone-link").get_attribute("href")
    assert href is not None
    phone.goto(href)
    check_page(phone, locale, "phone page")
    if SHOTS and locale == "zh-CN":
        phone.set_viewport_size(PHONE)
        phone.screenshot(path=str(DOCS / "simulator-phone.png"), full_page=True)
    phone.click("#pay")
    expect(phone.locator("#result")).to_have_text("支付成功" if locale == "zh-CN" else "Paid")
    check_page(phone, locale, "phone page, paid")
    phone.goto(href)  # the same code again: "already paid", neutral
    expect(phone.locator("#result")).to_have_class("neutral")
    expect(phone.locator("#result")).to_have_text(
        "订单已支付" if locale == "zh-CN" else "Already paid"
    )
    check_page(phone, locale, "phone page, already paid")
    phone.close()

    status = page.locator("#order-status")
    expect(status).to_have_attribute("data-status", "paid", timeout=15_000)
    expect(status).to_have_text("支付成功" if locale == "zh-CN" else "Paid")
    assert page.evaluate("window.__sameDocument") == "yes"
    # focus moves to the result; the receipt carries WeChat's transaction id
    assert page.evaluate("document.activeElement.id") == "paid-title"
    expect(page.locator("#checkout")).to_have_attribute("data-receipt", "ready")
    sim_order = httpx.get(f"{shop.simulator_url}/sim/orders/{order['out_trade_no']}", timeout=5)
    transaction_id = sim_order.json()["transaction_id"]
    assert transaction_id
    expect(page.locator("#receipt-transaction-id")).to_have_text(transaction_id)
    expect(page.locator("#receipt-out-trade-no")).to_have_text(order["out_trade_no"])
    expect(page.locator("#receipt-merchant")).to_have_text("扫码付演示茶铺")
    expect(page.locator("#receipt-paid-at")).to_contain_text(
        "北京时间" if locale == "zh-CN" else "Beijing time"
    )
    expect(page.locator("#return-link")).to_be_visible()
    assert page.locator("#qr svg").count() == 0
    checkout_url = f"{shop.shop_url}/checkout/{order['id']}"
    if locale == "zh-CN":
        if SHOTS:
            page.screenshot(path=str(DOCS / "checkout-paid.png"), full_page=True)
        # the return's time limit can be turned off; then the checks at leisure
        page.click("#stay")
        expect(page.locator("#return-note")).to_be_hidden()
        left = page.locator("#return-seconds").text_content()
        check_page(page, locale, "checkout, paid", live_regions=1)
        page.wait_for_timeout(1200)  # the countdown (one step a second) has stopped
        assert page.locator("#return-seconds").text_content() == left
        assert page.url == checkout_url
        page.click("#return-link")
        page.wait_for_url(shop.shop_url + "/")
    else:
        # back to the shop by itself (SCANPAY_CHECKOUT_RETURN_SECONDS here; 8 by default)
        page.wait_for_url(shop.shop_url + "/", timeout=10_000)
        expect(page.locator("#buy")).to_be_visible()
        # a paid checkout opened later shows the receipt as rendered by the server
        page.goto(checkout_url)
        expect(page.locator("#receipt-transaction-id")).to_have_text(transaction_id)
        page.click("#stay")
        check_page(page, locale, "checkout, paid (reopened)", live_regions=1)
    context.close()


def test_closed_live_and_in_both_languages(shop: Demo, browser: Browser) -> None:
    context, page = new_page(browser, "zh-CN", DESKTOP)
    buy(page, shop.shop_url)
    order = api_order(shop, page)
    closed = httpx.post(
        f"{shop.shop_url}/api/orders/{order['id']}/close",
        headers={"Authorization": f"Bearer {shop_key(shop)}"},
        timeout=10,
    )
    assert closed.status_code == 200, closed.text
    expect(page.locator("#order-status")).to_have_attribute("data-status", "closed", timeout=10_000)
    expect(page.locator("#closed-banner")).to_contain_text("未扣款")
    expect(page.locator("#restart-closed")).to_have_attribute("href", shop.shop_url + "/")
    check_page(page, "zh-CN", "checkout, closed", live_regions=1)
    page.goto(page.url + "?lang=en")  # the choice is kept in a cookie
    expect(page.locator("#closed-banner")).to_contain_text("No money was taken")
    check_page(page, "en", "checkout, closed", live_regions=1)
    page.goto(shop.shop_url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"
    context.close()


def test_buy_refused_by_wechat_is_a_502_page_with_retry(shop: Demo, browser: Browser) -> None:
    fault = {"faults": {"http_5xx": {"value": 1, "path": "/pay/unifiedorder"}}}
    faults = f"{shop.simulator_url}/sim/faults"
    assert httpx.post(faults, json=fault, timeout=5).status_code == 200
    contexts = []
    try:
        for locale, viewport in (("zh-CN", PHONE), ("en", DESKTOP)):
            context, page = new_page(browser, locale, viewport)
            contexts.append(context)
            page.goto(shop.shop_url + "/")
            with page.expect_response("**/shop/buy") as answer:
                page.click("#buy")
            assert answer.value.status == 502
            expect(page.locator("#error")).to_have_attribute("data-status", "502")
            assert "{" not in page.locator("main").inner_text()  # no raw JSON
            check_page(page, locale, "502 at Buy")
        # API clients keep JSON
        as_json = httpx.post(
            f"{shop.shop_url}/shop/buy", headers={"Accept": "application/json"}, timeout=10
        )
        assert as_json.status_code in (502, 503)  # the JSON mapping of scanpay.web.errors
        assert as_json.json()["error"]["code"]
    finally:
        httpx.delete(faults, timeout=5)
    page.click("#retry")  # WeChat answers again: the retry reaches a checkout page
    page.wait_for_url("**/checkout/**")
    expect(page.locator("#order-status")).to_have_attribute("data-status", "pending")
    for context in contexts:
        context.close()


def test_reconnects_after_the_network_returns(shop: Demo, browser: Browser) -> None:
    proxy = LoopbackProxy(int(shop.shop_url.rsplit(":", 1)[1]))
    try:
        context, page = new_page(browser, "zh-CN", DESKTOP)
        buy(page, proxy.url)
        order = api_order(shop, page)
        root, notice = page.locator("#checkout"), page.locator("#connection")
        expect(root).to_have_attribute("data-connection", "stream")
        events = f"/api/orders/{order['id']}/events"

        # a first cut: the notice shows; when the network is back the stream is resumed
        proxy.down()
        expect(notice).to_be_visible(timeout=5000)
        expect(notice).to_have_text("网络连接中断，正在重试…")
        time.sleep(1)
        back = time.monotonic()
        proxy.up()
        expect(root).to_have_attribute("data-connection", "stream", timeout=5000)
        expect(notice).to_be_hidden()
        resumed = proxy.requests(events, since=back)
        assert resumed
        assert resumed[0].headers.get("last-event-id", "").isdigit()
        settled = time.monotonic()
        time.sleep(2.5)  # on the stream again: no polling of the order meanwhile
        assert proxy.requests(f"/api/orders/{order['id']}", since=settled) == []

        # a second cut, with the payment made meanwhile
        proxy.down()
        expect(notice).to_be_visible(timeout=5000)
        sim_pay(shop, order["code_url"])
        time.sleep(1.5)
        expect(page.locator("#order-status")).to_have_attribute("data-status", "pending")
        proxy.up()
        # paid within 3 s of the network returning (the bound)
        expect(page.locator("#order-status")).to_have_attribute("data-status", "paid", timeout=3000)
        expect(notice).to_be_hidden()
        context.close()
    finally:
        proxy.close()


# Run on the open page with "hidden" or "visible": the tab is hidden, or shown again.
TAB_BECOMES: Final = """(state) => {
  Object.defineProperty(document, 'visibilityState', { value: state, configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_rechecks_when_the_network_or_the_tab_comes_back(shop: Demo, browser: Browser) -> None:
    """The status stream is held open with nothing on it (the request is never answered), so
    only the page's own re-checks can notice a payment: the one on ``online`` (the network
    comes back) and the one on ``visibilitychange`` to visible (the tab comes back)."""
    context, page = new_page(browser, "en-US", DESKTOP)
    held: list[str] = []  # the stream requests, never answered
    context.route("**/api/orders/*/events", lambda route: held.append(route.request.url))
    status, notice = page.locator("#order-status"), page.locator("#connection")
    for comes_back in ("network", "tab"):
        buy(page, shop.shop_url)
        order = api_order(shop, page)
        expect(page.locator("#qr svg")).to_be_visible()
        deadline = time.monotonic() + 5
        while not any(f"/api/orders/{order['id']}/events" in url for url in held):
            assert time.monotonic() < deadline, "the page never asked for its stream"
            time.sleep(0.05)
        sim_pay(shop, order["code_url"])
        while api_order(shop, page)["status"] != "paid":
            assert time.monotonic() < deadline + 10, "the service never learnt of the payment"
            time.sleep(0.1)
        if comes_back == "tab":
            page.evaluate(TAB_BECOMES, "hidden")  # a hidden tab checks nothing
        time.sleep(1.5)  # nothing reaches the page by itself
        expect(status).to_have_attribute("data-status", "pending")
        if comes_back == "network":
            context.set_offline(True)
            expect(notice).to_be_visible(timeout=3000)  # the "offline" handler
            context.set_offline(False)
        else:
            page.evaluate(TAB_BECOMES, "visible")
        expect(status).to_have_attribute("data-status", "paid", timeout=3000)
        expect(page.locator("#paid-banner")).to_be_visible()
        expect(notice).to_be_hidden()
    context.close()


def test_one_clock_in_the_demo_replaced_qr_and_expiry(shop: Demo, browser: Browser) -> None:
    """Advancing the simulator's clock moves the service's too: the open page swaps its QR
    (with a visible notice), Buy keeps working, and past the order's deadline it expires."""
    context, page = new_page(browser, "zh-CN", DESKTOP)
    buy(page, shop.shop_url)
    first = api_order(shop, page)
    qr = page.locator("#qr")
    expect(qr).to_have_attribute("data-out-trade-no", first["out_trade_no"])
    clock = f"{shop.simulator_url}/sim/clock/advance"
    assert httpx.post(clock, json={"seconds": WINDOW + 5}, timeout=10).status_code == 200

    expect(qr).not_to_have_attribute("data-out-trade-no", first["out_trade_no"], timeout=15_000)
    replaced = api_order(shop, page)
    assert replaced["out_trade_no"] != first["out_trade_no"]
    expect(page.locator("#out-trade-no")).to_have_text(replaced["out_trade_no"])
    expect(page.locator("#qr-notice")).to_have_text("二维码已更新，请扫描新的二维码。")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"0[56]:\d\d"))
    check_page(page, "zh-CN", "checkout, QR replaced", live_regions=1)
    page.goto(page.url + "?lang=en")
    check_page(page, "en", "checkout, QR replaced", live_regions=1)

    # Buy still works on the moved clock, and the new code can be paid
    other, other_page = new_page(browser, "zh-CN", DESKTOP)
    buy(other_page, shop.shop_url)
    fresh = api_order(shop, other_page)
    sim_pay(shop, fresh["code_url"])
    expect(other_page.locator("#order-status")).to_have_attribute(
        "data-status", "paid", timeout=15_000
    )
    other.close()

    # past the order's deadline (2 h by default): expired, no money taken, start again
    assert httpx.post(clock, json={"seconds": 2 * 3600 + 60}, timeout=10).status_code == 200
    expect(page.locator("#order-status")).to_have_attribute(
        "data-status", "expired", timeout=15_000
    )
    expect(page.locator("#expired-banner")).to_contain_text("No money was taken")
    expect(page.locator("#restart-expired")).to_be_visible()
    check_page(page, "en", "checkout, expired", live_regions=1)
    page.goto(page.url.split("?")[0] + "?lang=zh-CN")
    expect(page.locator("#expired-banner")).to_contain_text("未扣款")
    check_page(page, "zh-CN", "checkout, expired", live_regions=1)
    context.close()
