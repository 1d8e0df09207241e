"""The cashier's languages, error pages, receipt and static files, over HTTP (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from scanpay.web import i18n
from scanpay.web.app import create_app
from tests.web.conftest import SettingsFactory, Shop

SRC = Path(__file__).resolve().parents[2] / "src" / "scanpay"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("query", "cookie", "header", "default", "expected"),
    [
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "en", "zh-CN"),
        (None, None, "zh-TW", "en", "zh-CN"),  # any zh*
        (None, None, "en-US,en;q=0.9", "zh-CN", "en"),
        (None, None, "fr-FR, de;q=0.5", "zh-CN", "zh-CN"),  # nothing we speak: the default
        (None, None, "fr-FR, de;q=0.5", "en", "en"),
        (None, None, "en;q=0.3, zh;q=0.8", "en", "zh-CN"),  # by quality, not order
        (None, None, "zh;q=0, en", "zh-CN", "en"),  # q=0 means "not this"
        (None, None, None, "zh-CN", "zh-CN"),
        (None, None, "garbage;;;q=x,,", "zh-CN", "zh-CN"),
        (None, "en", "zh-CN", "zh-CN", "en"),  # the remembered choice wins over the header
        ("zh-CN", "en", "en", "en", "zh-CN"),  # ?lang= wins over everything
        ("klingon", "nonsense", "en", "zh-CN", "en"),  # bad values are ignored
        (None, None, None, "xx", "zh-CN"),
    ],
)
def test_negotiate(
    query: str | None, cookie: str | None, header: str | None, default: str, expected: str
) -> None:
    got = i18n.negotiate(query=query, cookie=cookie, accept_language=header, default=default)
    assert got == expected


def _catalogue_misses(domain: str, sources: list[tuple[Path, str]]) -> tuple[set[str], set[str]]:
    """(texts in the code without a zh-CN translation, catalogue entries nothing uses)."""
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    used: set[str] = set()
    assert sources
    for directory, pattern in sources:
        for filename, _line, message, _comments, _context in extract_from_dir(
            directory, method_map, options
        ):
            if re.fullmatch(pattern, filename) and isinstance(message, str):
                used.add(message)
    po = SRC / "web/locales/zh_CN/LC_MESSAGES" / f"{domain}.po"
    with po.open("rb") as handle:
        catalog = read_po(handle)
    translated = {m.id for m in catalog if m.id and m.string}
    known = {m.id for m in catalog if isinstance(m.id, str) and m.id}
    return used - translated, known - used


def test_every_cashier_text_has_a_chinese_translation() -> None:
    missing, unused = _catalogue_misses(
        "cashier",
        [(SRC / "web", r"(templates/.*\.html|pages\.py|error_pages\.py)")],
    )
    assert not missing, f"untranslated: {sorted(missing)}"
    assert not unused, f"catalogue entries nothing uses: {sorted(unused)}"
    assert i18n.translations("cashier", "zh-CN").gettext("Demo shop") == "演示商店"


def test_every_simulator_phone_text_has_a_chinese_translation() -> None:
    missing, unused = _catalogue_misses("simulator", [(SRC / "simulator", r"(pages|app)\.py")])
    assert not missing, f"untranslated: {sorted(missing)}"
    assert not unused, f"catalogue entries nothing uses: {sorted(unused)}"


async def test_language_choice_is_remembered_and_html_lang_follows(shop: Shop) -> None:
    zh = await shop.http.get("/", headers={"Accept-Language": "zh-TW,zh;q=0.9"})
    assert '<html lang="zh-CN">' in zh.text
    assert "演示商店" in zh.text
    assert i18n.COOKIE not in zh.cookies
    en = await shop.http.get("/?lang=en", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in en.text
    assert "Demo shop" in en.text
    assert en.cookies[i18n.COOKIE] == "en"
    assert "samesite=lax" in en.headers["set-cookie"].lower()
    # the client keeps the cookie: the next page is English despite the header
    again = await shop.http.get("/", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in again.text
    shop.http.cookies.clear()
    default = await shop.http.get("/")
    assert '<html lang="zh-CN">' in default.text
    assert "¥0.01" in default.text


async def test_default_locale_setting(make_settings: SettingsFactory) -> None:
    logo = "https://cdn.example/logo.png"
    app = create_app(
        make_settings(default_locale="en", merchant_name="Tea House", merchant_logo_url=logo)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop.test"
    ) as http:
        page = await http.get("/", headers={"Accept-Language": "fr"})
        chinese = await http.get("/", headers={"Accept-Language": "zh"})
    await app.state.scanpay.aclose()
    assert '<html lang="en">' in page.text
    assert "Tea House" in page.text
    assert f'<img class="logo" src="{logo}" alt=""' in page.text
    assert "img-src 'self' data: https://cdn.example;" in page.headers["content-security-policy"]
    assert "CN¥0.01" in page.text
    assert '<html lang="zh-CN">' in chinese.text


async def test_errors_are_pages_for_browsers_and_json_for_programs(shop: Shop) -> None:
    missing = "/checkout/ord_" + "B" * 22
    page = await shop.http.get(missing, headers=BROWSER)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "订单不存在" in page.text
    assert '<html lang="zh-CN">' in page.text
    english = await shop.http.get(missing, headers={**BROWSER, "Accept-Language": "en"})
    assert "Order not found" in english.text
    nowhere = await shop.http.get("/no/such/page", headers=BROWSER)
    assert nowhere.status_code == 404
    assert "页面不存在" in nowhere.text
    # programs keep the JSON errors
    for path, headers in (
        (missing, {"Accept": "application/json"}),
        (missing, {}),
        ("/api/orders/ord_" + "B" * 22, BROWSER),
        (missing + "/qr", {"Accept": "application/json, text/html;q=0.5"}),
    ):
        answer = await shop.http.get(path, headers=headers)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "NOT_FOUND", path


async def test_unexpected_failure_is_a_500_page(shop: Shop) -> None:
    order = await shop.create_order()
    engine = shop.context.store.engine
    with engine.begin() as conn:  # the database loses a table under the running service
        conn.execute(sa.text("ALTER TABLE orders RENAME TO orders_away"))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=shop.app, raise_app_exceptions=False),
            base_url="http://shop.test",
        ) as http:
            page = await http.get(f"/checkout/{order['id']}", headers=BROWSER)
            api = await http.get(f"/checkout/{order['id']}/qr")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE orders_away RENAME TO orders"))
    assert page.status_code == 500
    assert "系统繁忙" in page.text
    assert "orders" not in page.text  # nothing of the error itself
    assert 'id="retry"' in page.text
    assert api.status_code == 500
    assert api.json()["error"]["code"] == "INTERNAL"


async def test_paid_page_has_the_receipt(shop: Shop) -> None:
    order = await shop.create_order(1999, "Tea")
    paid = await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    html = (await shop.http.get(f"/checkout/{order['id']}")).text
    assert paid.transaction_id
    assert f'id="receipt-transaction-id" class="mono" translate="no">{paid.transaction_id}<' in html
    assert f'id="receipt-out-trade-no" class="mono" translate="no">{order["out_trade_no"]}<' in html
    assert 'id="receipt-amount">¥19.99<' in html
    assert re.search(r'id="receipt-paid-at">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d（北京时间）<', html)
    state = (await shop.http.get(f"/checkout/{order['id']}/qr?lang=en")).json()
    assert state["receipt"]["transaction_id"] == paid.transaction_id
    assert state["receipt"]["amount"] == "CN¥19.99"
    assert state["receipt"]["paid_at"].endswith("(Beijing time)")
    assert state["status_text"] == "Paid"


async def test_static_files_are_fingerprinted_cached_and_compressed(shop: Shop) -> None:
    page = await shop.http.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"  # httpx decoded it for us
    assert page.headers["cache-control"] == "no-store"
    css = re.search(r'href="(/static/style\.([0-9a-f]{10})\.css)"', page.text)
    assert css is not None
    raw = shop.http  # httpx decodes gzip itself; the headers say what was sent
    response = await raw.get(css.group(1), headers={"Accept-Encoding": "gzip"})
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"].startswith("text/css")
    body = (SRC / "web/static/style.css").read_bytes()
    assert response.content == body
    etag = response.headers["etag"]
    plain = await raw.get("/static/style.css", headers={"If-None-Match": etag})
    assert plain.status_code == 304
    assert plain.headers["cache-control"] == "no-cache"
    stale = await raw.get("/static/style.0000000000.css")
    assert stale.status_code == 404
    posted = await raw.post(css.group(1))
    assert posted.status_code == 405
    identity = await raw.get(css.group(1), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert identity.content == body
    icon = await raw.get("/favicon.ico")
    assert icon.status_code == 301
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]{10}\.svg", icon.headers["location"])
    svg = await raw.get(icon.headers["location"])
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg")


def test_demo_payment_window_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scanpay.cli import demo_cmd
    from scanpay.cli.main import build_parser, main

    args = build_parser().parse_args(["demo", "--payment-window", "420"])
    assert args.payment_window == 420
    assert main(["demo", "--payment-window", "100", "--data-dir", str(tmp_path)]) == 2
    assert "360 to 7200" in capsys.readouterr().out
    sim, app = demo_cmd.build(tmp_path, "127.0.0.1", 1, 2, payment_window=420)
    try:
        settings = app.state.scanpay.settings
        assert settings.payment_window_seconds == 420
        assert settings.merchant_name == demo_cmd.DEMO_MERCHANT
        # one clock: the service reads the simulator's
        before = app.state.scanpay.service.now()
        sim.clock.advance(3600)
        assert (app.state.scanpay.service.now() - before).total_seconds() >= 3600
    finally:
        sim.close()
        app.state.scanpay.store.close()
