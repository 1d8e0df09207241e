"""The console over HTTP (in-process): session limits on the test clock, roles, CSRF, bad
input, the sign-in redirect, CSV export, languages and the message catalogues."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import httpx
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from fastapi import FastAPI
from starlette.requests import Request

from scanpay.domain.machine import Trigger
from scanpay.domain.model import AttemptStatus, EventType, OrderStatus, ReportSource, utcnow
from scanpay.domain.operators import Action, Role
from scanpay.domain.refunds import RefundStatus
from scanpay.simulator import SimClock, Simulator
from scanpay.store.operators import OperatorStore
from scanpay.web.app import create_app
from scanpay.web.console.i18n import LOCALES, load_translators, negotiate
from scanpay.web.console.passwords import hash_password
from tests.web.conftest import BASE_URL, SHOP_KEY, LateASGITransport, SettingsFactory

PASSWORD = "a-long-enough-password"


@cache
def password_hash() -> str:
    """One Argon2id hash of PASSWORD for every operator here (each hash costs ~0.1-1 s)."""
    return hash_password(PASSWORD)


START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Console:
    app: FastAPI
    sim: Simulator
    clock: SimClock
    operators: OperatorStore

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)


@pytest.fixture
async def console(make_settings: SettingsFactory) -> AsyncIterator[Console]:
    clock = SimClock(start=START)
    late = LateASGITransport()
    sim = Simulator.create(notify_transport=late, clock=clock)
    creds = sim.credentials
    settings = make_settings(
        appid=creds.appid,
        mchid=creds.mchid,
        api_v2_key=creds.api_v2_key.reveal(),
        reconciler_enabled=False,
        console_sign_in_delay_seconds=0,
    )
    app = create_app(settings, wechat_transport=httpx.ASGITransport(app=sim.app), clock=clock.now)
    late.app = app
    operators = OperatorStore(app.state.scanpay.store.engine)
    for name, role in (("ada", Role.ADMIN), ("sam", Role.SUPPORT), ("vic", Role.VIEWER)):
        operators.add(name, role, password_hash(), utcnow())
    try:
        yield Console(app, sim, clock, operators)
    finally:
        await app.state.scanpay.aclose()
        await sim.stop()
        sim.close()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(http: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Sign in; the session's CSRF token."""
    page = await http.get("/console/sign-in")
    match = CSRF.search(page.text)
    assert match is not None
    form = {"csrf_token": match.group(1), "name": name, "password": password, "next": "/console"}
    answer = await http.post("/console/sign-in", data=form)
    assert answer.status_code == 303, answer.text
    home = await http.get("/console")
    assert home.status_code == 200
    token = CSRF.search(home.text)
    assert token is not None
    return token.group(1)


async def test_sessions_end_after_idle_time_and_after_twelve_hours(console: Console) -> None:
    async with console.client() as http:
        await sign_in(http, "vic")
        for _ in range(26):  # active every 29 minutes: still signed in for 12 hours
            console.clock.advance(29 * 60)
            answer = await http.get("/console/orders")
            if answer.status_code != 200:
                break
        assert answer.status_code == 303
        assert "why=expired" in answer.headers["location"]
        assert console.clock.now() - START > timedelta(hours=12)
        assert console.clock.now() - START <= timedelta(hours=12, minutes=29)
        await sign_in(http, "vic")
        console.clock.advance(30 * 60 + 1)
        answer = await http.get("/console")
        assert answer.status_code == 303
        assert "why=expired" in answer.headers["location"]


async def test_roles_csrf_and_bad_input_change_nothing(console: Console) -> None:
    async with console.client() as http:
        order = (
            await http.post(
                "/api/orders",
                json={"amount": 500, "description": '=HYPERLINK("http://evil")'},
                headers={"Authorization": f"Bearer {SHOP_KEY}"},
            )
        ).json()
        csrf = await sign_in(http, "sam")
        close = f"/console/orders/{order['id']}/close"
        assert (await http.post(close, data={"csrf_token": csrf})).status_code == 403  # support
        assert (await http.get("/console/operators")).status_code == 403
        assert (await http.post(close, content=b"{}", headers={"content-type":
                "application/json"})).status_code == 422  # fmt: skip
        query = await http.post(f"/console/orders/{order['id']}/query", data={"csrf_token": csrf})
        assert query.status_code == 303
        for bad in ("?cursor=nonsense", "?min=12.345", "?from=2025-13-01", "?status=lost"):
            answer = await http.get("/console/orders" + bad)
            assert answer.status_code == 422, bad
            assert answer.headers["content-type"].startswith("text/html")
        csv_text = (await http.get("/console/orders.csv")).text
        assert "'=HYPERLINK" in csv_text  # kept as text by spreadsheets
        http.cookies.clear()
        csrf = await sign_in(http, "ada")
        refund = f"/console/orders/{order['id']}/refund"
        assert (
            await http.post(refund, data={"csrf_token": csrf, "amount": "1"})
        ).status_code == 409
        assert (await http.post(close, data={"csrf_token": csrf})).status_code == 303
        assert (await http.get(f"/api/orders/{order['id']}")).json()["status"] == "closed"
        add = {"csrf_token": csrf, "name": "new.one", "role": "viewer", "password": "short"}
        assert (await http.post("/console/operators", data=add)).status_code == 422
        assert console.operators.get("new.one") is None
        add["password"] = "long enough password"
        assert (await http.post("/console/operators", data=add)).status_code == 303
        disable = await http.post("/console/operators/vic/disable", data={"csrf_token": csrf})
        assert disable.status_code == 303
        vic = console.operators.get("vic")
        assert vic is not None
        assert vic.disabled
        # an outside address after sign-in is never followed
        page = await http.get("/console/sign-in?next=//evil.example/")
        assert 'value="/console"' in page.text


async def test_a_disabled_operator_cannot_sign_in(console: Console) -> None:
    console.operators.set_disabled("vic", True, utcnow())
    async with console.client() as http:
        page = await http.get("/console/sign-in")
        match = CSRF.search(page.text)
        assert match is not None
        form = {"csrf_token": match.group(1), "name": "vic", "password": PASSWORD}
        assert (await http.post("/console/sign-in", data=form)).status_code == 401
        form["csrf_token"] = "forged"
        assert (await http.post("/console/sign-in", data=form)).status_code == 403


def _request(headers: dict[str, str], query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw, "query_string": query.encode()})


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, "", "zh-CN"),
        ({"Accept-Language": "en-US,en;q=0.9"}, "", "en"),
        ({"Accept-Language": "zh-TW"}, "", "zh-CN"),
        ({"Accept-Language": "fr, en;q=0.5, zh;q=0.8"}, "", "zh-CN"),
        ({"Accept-Language": "fr"}, "", "zh-CN"),
        ({"Accept-Language": "en", "Cookie": "scanpay_lang=zh-CN"}, "", "zh-CN"),
        ({"Cookie": "scanpay_lang=en"}, "lang=zh-Hans", "zh-CN"),
        ({}, "lang=en", "en"),
        ({}, "lang=xx", "zh-CN"),
    ],
)
def test_language_negotiation(headers: dict[str, str], query: str, expected: str) -> None:
    assert negotiate(_request(headers, query)) == expected


def test_every_message_has_a_chinese_translation() -> None:
    root = Path(LOCALES).parent
    sources = [*root.glob("templates/*.html"), *root.glob("*.py")]
    used = {
        m.group(2)
        for path in sources
        for m in re.finditer(r"""_\((["'])(.+?)\1\)""", path.read_text(encoding="utf-8"))
    }
    words = {
        *(s.value for s in OrderStatus), *(s.value for s in AttemptStatus),
        *(s.value for s in RefundStatus), *(r.value for r in Role), *(a.value for a in Action),
        *(e.value for e in EventType), *(s.value for s in ReportSource),
        *(t.value for t in Trigger),
    }  # fmt: skip
    zh = load_translators()["zh-CN"]
    missing = sorted(m for m in used | words if zh.gettext(m) == m)
    assert missing == []
    assert load_translators()["en"].gettext("partially_refunded") == "Partly refunded"


async def test_cookies_are_secure_when_the_service_is_public_over_https(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(
        make_settings(public_base_url="https://shop.example", reconciler_enabled=False)
    )
    OperatorStore(app.state.scanpay.store.engine).add("ada", Role.ADMIN, password_hash(), utcnow())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            page = await http.get("/console/sign-in")
            assert "secure" in page.headers["set-cookie"].lower()
            match = CSRF.search(page.text)
            assert match is not None
            form = {"csrf_token": match.group(1), "name": "ada", "password": PASSWORD}
            # a Secure cookie is not sent back over http: set it as the browser would over https
            http.cookies.set("scanpay_console_signin", match.group(1))
            answer = await http.post("/console/sign-in", data=form)
            assert answer.status_code == 303
            session = answer.headers["set-cookie"]
            assert session.startswith("scanpay_console=")
            for part in ("HttpOnly", "Secure", "SameSite=lax", "Path=/console"):
                assert part.lower() in session.lower()
    finally:
        await app.state.scanpay.aclose()


def test_the_catalogues_hold_exactly_what_the_console_uses() -> None:
    """What ``pybabel extract -F babel.cfg -k N_`` finds in the console (templates, modules,
    the dynamic words in words.py) is exactly the set of messages in both PO files."""
    root = Path(LOCALES).parent
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(root), method_map, keywords=keywords
        )
    }
    for folder in ("zh_CN", "en"):
        with (root / "locales" / folder / "LC_MESSAGES" / "console.po").open("rb") as po:
            catalogue = read_po(po)
        ids = {m.id if isinstance(m.id, str) else m.id[0] for m in catalogue if m.id}
        assert ids == found, folder
