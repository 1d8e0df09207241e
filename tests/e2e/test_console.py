"""The operator console in real headless Chromium against a running service and simulator.

One service, one simulator and one browser serve every test here (``console_rig``); each
test opens its own browser context (its own cookies). The session-expiry test moves the
shared clock, so it runs last.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from scanpay.domain.reconciliation import (
    Difference,
    DifferenceKind,
    DifferenceState,
    Entry,
    Report,
    ReportStatus,
    Totals,
)
from scanpay.store.reconciliations import ReconciliationStore
from tests.e2e.axe import assert_accessible
from tests.e2e.console_rig import PASSWORDS, SHOP_KEY, ConsoleRig, console_rig
from tests.webhooks.receiver import serve_receiver

pytestmark = pytest.mark.browser
__all__ = ["console_rig"]  # the module-scoped fixture, imported for pytest
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORTS["desktop"], locale="zh-CN")
    yield context
    context.close()


def sign_in(page: Page, rig: ConsoleRig, name: str, next_path: str = "/console") -> None:
    page.goto(f"{rig.shop_url}/console/sign-in?next={next_path}")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#sign-in")
    page.wait_for_url(f"**{next_path}")
    expect(page.locator("#who")).to_contain_text(name)
    rig.session_tokens.extend(
        c["value"] for c in page.context.cookies() if c["name"] == "scanpay_console"
    )


def csrf_of(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def post_form(page: Page, path: str, fields: dict[str, str]) -> int:
    """POST a form with the browser context's cookies (the console's CSP allows no script
    requests, so it goes through Playwright's request API); the HTTP status."""
    url = page.url.split("/console")[0] + path
    form: dict[str, str | float | bool] = dict(fields)
    response = page.request.post(url, form=form, max_redirects=0)
    return response.status


def no_secrets(rig: ConsoleRig, html: str, extra: tuple[str, ...] = ()) -> None:
    for secret in (*rig.secrets, *extra):
        assert secret not in html


def test_sign_in_every_page_in_both_languages_accessible_and_free_of_secrets(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    paid = rig.paid_order(2500, "乌龙茶 250 克")
    page = context.new_page()
    page.goto(rig.shop_url + "/console/orders")
    page.wait_for_url("**/console/sign-in**")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("h1")).to_have_text("登录")
    # a wrong password: refused, said so, no session
    page.fill("#name", "ada")
    page.fill("#password", "not the password at all")
    page.click("#sign-in")
    expect(page.locator("#error")).to_have_text("用户名或密码错误。")
    assert_accessible(page, "sign-in with an error (zh-CN)")
    page.goto(rig.shop_url + "/console/sign-in?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert_accessible(page, "sign-in (en)")
    page.goto(rig.shop_url + "/console/sign-in?lang=zh-CN&next=/console/orders")
    page.fill("#name", "ada")
    assert not [c for c in context.cookies() if c["name"] == "scanpay_console"]
    page.fill("#password", PASSWORDS["ada"])
    page.click("#sign-in")
    page.wait_for_url("**/console/orders")
    cookie = next(c for c in context.cookies() if c["name"] == "scanpay_console")
    assert cookie["httpOnly"]
    assert (cookie["sameSite"], cookie["path"]) == ("Lax", "/console")
    session_token = cookie["value"]

    refused = httpx.post(rig.shop_url + "/notify/v2", content=b"<xml><a>1</a></xml>", timeout=5)
    assert refused.status_code >= 400
    note_id, source = rig.rows(
        "SELECT id, client FROM notifications_received ORDER BY id DESC LIMIT 1"
    )[0]
    assert source == "127.0.0.1"  # the sender's address is kept with every notification
    pages = [
        "/console",
        "/console/orders",
        f"/console/orders?q={paid['out_trade_no']}",
        f"/console/orders/{paid['id']}",
        "/console/alerts",
        "/console/alerts?show=acknowledged",
        "/console/notifications",
        f"/console/notifications/{note_id}",
        "/console/audit",
        "/console/operators",
        "/console/orders/ord_does_not_exist",
    ]
    for lang in ("zh-CN", "en"):
        for path in pages:
            sep = "&" if "?" in path else "?"
            page.goto(f"{rig.shop_url}{path}{sep}lang={lang}")
            expect(page.locator("html")).to_have_attribute("lang", lang)
            assert_accessible(page, f"{path} ({lang})")
            no_secrets(rig, page.content(), (session_token,))
        # the refund confirmation step too
        page.goto(f"{rig.shop_url}/console/orders/{paid['id']}")
        page.fill("#refund-amount", "1.00")
        page.click("#refund")
        expect(page.locator("#confirm-refund")).to_be_visible()
        assert_accessible(page, f"refund confirmation ({lang})")
    page.goto(f"{rig.shop_url}/console/notifications")
    expect(page.locator("#refused-groups")).to_contain_text("127.0.0.1")
    # the language sticks (cookie scanpay_lang) and shows in the texts
    page.goto(rig.shop_url + "/console")
    expect(page.locator("h1")).to_have_text("Today at a glance")
    page.goto(rig.shop_url + "/console?lang=zh-CN")
    expect(page.locator("h1")).to_have_text("今日概览")
    page.click("#sign-out")
    page.wait_for_url("**/console/sign-in?why=bye")
    page.goto(rig.shop_url + "/console")
    page.wait_for_url("**/console/sign-in**")
    no_secrets(rig, rig.log_path.read_text(), (session_token,))


def take_screenshots(browser: Browser | None, rig: ConsoleRig, order_id: str) -> None:
    assert browser is not None
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in VIEWPORTS.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        sign_in(page, rig, "ada")
        for lang in ("zh-CN", "en"):
            for name, path in (
                ("today", "/console"),
                ("orders", "/console/orders"),
                ("order", f"/console/orders/{order_id}"),
                ("alerts", "/console/alerts?show=acknowledged"),
            ):
                page.goto(f"{rig.shop_url}{path}{'&' if '?' in path else '?'}lang={lang}")
                page.screenshot(path=str(SHOTS / f"{name}-{lang}-{size}.png"), full_page=True)
        context.close()


def test_state_change_without_csrf_token_is_refused(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    order = rig.create_order(900, "Jasmine tea")
    page = context.new_page()
    sign_in(page, rig, "ada", f"/console/orders/{order['id']}")
    path = f"/console/orders/{order['id']}/close"
    assert post_form(page, path, {}) == 403
    assert post_form(page, path, {"csrf_token": "x" * 43}) == 403
    assert rig.order(order["id"])["status"] == "pending"
    refusals = rig.rows(
        "SELECT outcome, detail FROM operator_actions WHERE target = :t", t=order["id"]
    )
    assert [r[0] for r in refusals] == ["refused", "refused"]
    # with the token the same request closes the order
    assert post_form(page, path, {"csrf_token": csrf_of(page)}) == 303
    assert rig.order(order["id"])["status"] == "closed"


def test_viewer_refund_is_refused_and_changes_nothing(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    order = rig.paid_order(1200, "Pu-erh")
    page = context.new_page()
    sign_in(page, rig, "vic", f"/console/orders/{order['id']}")
    assert page.locator("#refund").count() == 0  # no refund form for a viewer
    assert page.locator("#requery").count() == 0
    fields = {"csrf_token": csrf_of(page), "amount": "12.00", "reason": "x",
              "key": "console-" + "a" * 32}  # fmt: skip
    before = rig.rows("SELECT * FROM orders WHERE id = :i", i=order["id"])
    assert post_form(page, f"/console/orders/{order['id']}/refund/confirm", fields) == 403
    assert post_form(page, f"/console/orders/{order['id']}/refund", fields) == 403
    assert rig.rows("SELECT count(*) FROM refunds WHERE order_id = :i", i=order["id"]) == [(0,)]
    assert rig.rows("SELECT * FROM orders WHERE id = :i", i=order["id"]) == before
    page.goto(f"{rig.shop_url}/console/orders/{order['id']}/refund")  # GET: no such page
    # support may re-query but not refund
    context.clear_cookies()
    sign_in(page, rig, "sam", f"/console/orders/{order['id']}")
    assert page.locator("#refund").count() == 0
    page.click("#requery")
    expect(page.locator("#done")).to_be_visible()
    assert post_form(page, f"/console/orders/{order['id']}/refund/confirm",
                     fields | {"csrf_token": csrf_of(page)}) == 403  # fmt: skip


def test_console_refund_reaches_success_once_and_shows_in_the_timeline(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    order = rig.paid_order(3000, "Longjing")
    page = context.new_page()
    sign_in(page, rig, "ada", f"/console/orders/{order['id']}")
    page.fill("#refund-amount", "10.50")
    page.fill("#refund-reason", "damaged box")
    page.click("#refund")
    expect(page.locator("#confirm-text")).to_contain_text("¥10.50")
    page.locator("#confirm-refund").dblclick()  # a double click refunds once
    page.wait_for_url(f"**/console/orders/{order['id']}?done=refund")
    deadline = time.monotonic() + 20
    status = page.locator("#refunds .refund-status")
    while status.first.get_attribute("data-status") != "success":
        assert time.monotonic() < deadline, "the refund did not reach success"
        rig.advance(2)  # the simulator settles refunds after a simulated second
        page.reload()
    assert status.count() == 1
    rows = rig.rows("SELECT out_refund_no, amount, status FROM refunds WHERE order_id = :i",
                    i=order["id"])  # fmt: skip
    assert [(r[1], r[2]) for r in rows] == [(1050, "success")]
    assert rig.refund_state_at_wechat(rows[0][0]) == "SUCCESS"
    timeline = page.locator("#timeline")
    expect(timeline.locator("[data-kind=refund]")).to_contain_text(rows[0][0])
    expect(timeline.locator("[data-kind=operator]").filter(has_text="ada")).to_have_count(1)
    expect(page.locator("#order-status")).to_have_attribute("data-status", "partially_refunded")
    audit = rig.rows("SELECT action, outcome FROM operator_actions WHERE target = :i "
                     "AND action = 'refund'", i=order["id"])  # fmt: skip
    assert audit == [("refund", "ok")]


def test_an_order_is_found_by_each_of_its_four_numbers(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    order = rig.paid_order(4100, "Tieguanyin")
    rig.create_order(4100, "a decoy")
    api = httpx.post(
        f"{rig.shop_url}/api/orders/{order['id']}/refunds",
        json={"amount": 100, "reason": "sample"},
        headers={"Authorization": "Bearer shop-key-for-console-tests-0123",
                 "Idempotency-Key": "find-me-1"},
        timeout=20,
    )  # fmt: skip
    assert api.status_code == 201, api.text
    (transaction_id,) = rig.rows(
        "SELECT transaction_id FROM payment_attempts WHERE order_id = :i", i=order["id"]
    )[0]
    numbers = [order["id"], order["out_trade_no"], transaction_id, api.json()["out_refund_no"]]
    page = context.new_page()
    sign_in(page, rig, "vic", "/console/orders")
    for number in numbers:
        page.fill("#q", number)
        page.click("#find")
        links = page.locator("#orders a.order-link")
        expect(links).to_have_count(1)
        expect(links.first).to_have_text(order["id"])
    page.fill("#q", "sp000000000000nothing")
    page.click("#find")
    expect(page.locator("#no-orders")).to_be_visible()


def test_both_qr_codes_paid_raises_an_alert_that_can_be_acknowledged(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    rig.sim_faults({"delay_notifications": 60})
    try:
        order = rig.create_order(1999, "Two QR codes")
        rig.advance(15 * 60 - 5)
        rig.post_sim("/sim/pay", {"code_url": order["code_url"]})  # just in time; notice held
        rig.advance(10)  # past the QR's window: the next checkout look replaces it
        rig.wire.lying_close = True  # the close "succeeds" although the order was paid
        try:
            qr = httpx.get(f"{rig.shop_url}/checkout/{order['id']}/qr", timeout=20).json()
        finally:
            rig.wire.lying_close = False
        fresh = rig.order(order["id"])
        assert fresh["out_trade_no"] != order["out_trade_no"], qr
        rig.post_sim("/sim/pay", {"code_url": fresh["code_url"]})
        rig.advance(61)  # both notifications now
    finally:
        rig.clear_faults()
    rig.wait_status(order["id"], "paid")
    page = context.new_page()
    sign_in(page, rig, "sam", "/console/alerts")
    alert = page.locator("li.alert[data-reason=second_payment]")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text(order["id"])
    expect(alert.locator(".refund-state")).to_be_visible()  # its automatic refund
    alert.locator("input[name=note]").fill("Checked: the second payment is refunded.")
    alert.locator("button").click()
    page.wait_for_url("**/console/alerts?done=ack")
    expect(page.locator("li.alert[data-reason=second_payment]")).to_have_count(0)
    page.goto(rig.shop_url + "/console/alerts?show=acknowledged&lang=en")
    acked = page.locator("li.alert[data-reason=second_payment]")
    expect(acked.locator(".ack")).to_contain_text("Acknowledged by sam")
    expect(acked.locator(".ack")).to_contain_text("Checked: the second payment is refunded.")
    page.goto(f"{rig.shop_url}/console/orders/{order['id']}")
    expect(page.locator("#timeline [data-kind=alert]")).to_have_count(1)
    expect(page.locator("#attempts tbody tr")).to_have_count(2)
    if os.environ.get("SCANPAY_WRITE_SCREENSHOTS") == "1":
        take_screenshots(context.browser, rig, order["id"])


def test_hostile_descriptions_are_shown_as_text(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    rig = console_rig
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>"\'&'
    order = rig.create_order(321, hostile)
    page = context.new_page()
    sign_in(page, rig, "ada", f"/console/orders/{order['id']}")
    expect(page.locator("#description")).to_have_text(hostile)
    assert page.locator("#description img, #description script").count() == 0
    page.goto(f"{rig.shop_url}/console/orders?q={order['id']}")
    expect(page.locator("#orders td.desc")).to_have_text(hostile)
    assert page.evaluate("window.__pwned") is None
    csv = page.request.get(f"{rig.shop_url}/console/orders.csv?q={order['id']}").text()
    assert hostile.replace('"', '""') in csv


def test_sign_in_is_slowed_then_locked(console_rig: ConsoleRig, context: BrowserContext) -> None:
    rig = console_rig
    page = context.new_page()
    page.goto(rig.shop_url + "/console/sign-in?lang=en")
    for _ in range(2):
        page.fill("#name", "mallory")
        page.fill("#password", "guess-guess-guess")
        page.click("#sign-in")
        expect(page.locator("#error")).to_have_text("Wrong name or password.")
    page.fill("#name", "mallory")
    page.fill("#password", "guess-guess-guess")
    page.click("#sign-in")
    expect(page.locator("#error")).to_have_text("Too many failed sign-ins. Try again later.")


def test_webhook_deliveries_resend_and_disabled_endpoint(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    """An order's webhook lines, "Re-send webhooks" clicked by support, and the endpoint a
    410 turned off in the alerts inbox; both pages axe-clean in both languages."""
    rig = console_rig
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    with serve_receiver() as ok, serve_receiver() as gone:
        gone.script[:] = [(410, {})] * 10
        made = {}
        for name, receiver in (("ok", ok), ("gone", gone)):
            answer = httpx.post(f"{rig.shop_url}/api/webhook-endpoints", headers=auth,
                                json={"url": receiver.url}, timeout=10)  # fmt: skip
            assert answer.status_code == 201, answer.text
            made[name] = answer.json()
        try:
            paid = rig.paid_order(880, "Webhooked tea")
            [first] = [r for r in ok.wait_for(1) if r.json["data"]["id"] == paid["id"]]
            gone.wait_for(1)
            page = context.new_page()
            sign_in(page, rig, "sam", f"/console/orders/{paid['id']}")
            lines = page.locator("#timeline li[data-kind=webhook]")
            expect(lines).to_have_count(2)
            expect(lines.filter(has_text=made["ok"]["id"])).to_contain_text(first.id)
            expect(lines.filter(has_text=made["gone"]["id"])).to_contain_text("410")
            for lang in ("en", "zh-CN"):
                for path in (f"/console/orders/{paid['id']}", "/console/alerts"):
                    page.goto(f"{rig.shop_url}{path}?lang={lang}")
                    assert_accessible(page, f"{path} with webhooks ({lang})")
                    no_secrets(rig, page.content(), (made["ok"]["secret"], made["gone"]["secret"]))
            expect(page.locator("#attention")).to_contain_text(made["gone"]["id"])
            page.goto(f"{rig.shop_url}/console/orders/{paid['id']}?lang=en")
            page.get_by_role("button", name="Re-send webhooks").click()
            expect(page.locator("#done")).to_be_visible()
            again = ok.wait_for(2)[-1]
            assert again.id == first.id  # the same webhook-id
            lines = page.locator("#timeline li[data-kind=webhook]")
            for _ in range(50):  # the attempt is recorded just after the receiver answers
                page.reload()
                if lines.count() == 3:
                    break
                time.sleep(0.1)
            expect(lines).to_have_count(3)
            assert len(gone.received) == 1  # turned off: nothing more
        finally:
            for endpoint in made.values():
                httpx.delete(f"{rig.shop_url}/api/webhook-endpoints/{endpoint['id']}",
                             headers=auth, timeout=10)  # fmt: skip


def test_reconciliation_pages_in_both_languages_are_accessible(
    console_rig: ConsoleRig, context: BrowserContext
) -> None:
    """The reconciliation list and a day's report (issue 14's store, seeded through it)."""
    rig = console_rig
    paid = rig.paid_order(1200, "Reconciled tea")
    store = ReconciliationStore(rig.engine)
    lost = Difference(DifferenceKind.MISSING_LOCAL, Entry.PAYMENT, "sp-nobody-ordered",
                      out_trade_no="sp-nobody-ordered", transaction_id="4200000009",
                      remote_amount=300)  # fmt: skip
    wrong = Difference(DifferenceKind.AMOUNT_MISMATCH, Entry.PAYMENT, paid["out_trade_no"],
                       out_trade_no=paid["out_trade_no"], order_id=paid["id"],
                       local_amount=1200, remote_amount=1201)  # fmt: skip
    held = Difference(DifferenceKind.MISSING_REMOTE, Entry.PAYMENT, "sp-late",
                      out_trade_no="sp-late", local_amount=50,
                      state=DifferenceState.HELD)  # fmt: skip
    totals = Totals(payments=2, payment_amount=1501, fees=9)
    for day, found in ((date(2025, 2, 27), []), (date(2025, 2, 28), [lost, wrong, held])):
        status = ReportStatus.DIFFERENCES if found else ReportStatus.MATCHED
        store.save(Report(day, status, "v2", totals, Totals(1, 1250), 2, found,
                          datetime(2025, 3, 1, 2, 0, tzinfo=UTC)), [])  # fmt: skip
    page = context.new_page()
    sign_in(page, rig, "vic", "/console/reconciliation")
    for lang, heading in (("zh-CN", "对账"), ("en", "Reconciliation")):
        page.goto(f"{rig.shop_url}/console/reconciliation?lang={lang}")
        expect(page.locator("h1")).to_have_text(heading)
        expect(page.locator('#days tr[data-day="2025-02-28"] td[data-open]')).to_have_text("2")
        assert_accessible(page, f"/console/reconciliation ({lang})")
        page.click('a[href="/console/reconciliation/2025-02-28"]')
        page.wait_for_url("**/console/reconciliation/2025-02-28")
        expect(page.locator("#differences tr.difference")).to_have_count(2)
        expect(page.locator("#held tr.difference")).to_have_count(1)
        assert_accessible(page, f"/console/reconciliation/2025-02-28 ({lang})")
    page.click(f'#differences a[href="/console/orders/{paid["id"]}"]')
    expect(page.locator("#order-id")).to_have_text(paid["id"])


def test_session_ends_after_idle_time(console_rig: ConsoleRig, context: BrowserContext) -> None:
    """Moves the shared clock: keep this test last."""
    rig = console_rig
    page = context.new_page()
    sign_in(page, rig, "vic", "/console/orders")
    rig.advance(29 * 60)
    page.goto(rig.shop_url + "/console/orders")
    expect(page.locator("h1")).to_have_text("订单")  # 29 idle minutes: still signed in
    rig.advance(31 * 60)
    page.goto(rig.shop_url + "/console/orders")
    page.wait_for_url("**/console/sign-in**why=expired**")
    expect(page.locator("#why")).to_have_text("会话已结束，请重新登录。")
    assert re.search(r"next=%2Fconsole%2Forders", page.url)
    # nothing the whole module did put a secret or a session token into the service's log
    log = rig.log_path.read_text()
    assert "console sign-in operator=" in log  # the log was captured
    no_secrets(rig, log, tuple(rig.session_tokens))
