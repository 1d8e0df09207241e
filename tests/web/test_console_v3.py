"""The console with API v3: a verified v3 notification's decrypted content is for admins
only (support gets 403), its reading is audited, and no key reaches the page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from scanpay.domain.model import utcnow
from scanpay.domain.operators import Role
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.store.operators import OperatorStore
from scanpay.web.console.passwords import hash_password
from tests.web.conftest import SettingsFactory, Shop
from tests.web.v3kit import open_shop

PASSWORD = "a-long-enough-password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def shop(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for opened in open_shop(make_settings, tmp_path, credentials, "v3-public-key"):
        yield opened


async def sign_in(http: httpx.AsyncClient, name: str) -> None:
    http.cookies.clear()
    page = await http.get("/console/sign-in")
    match = CSRF.search(page.text)
    assert match is not None
    form = {"csrf_token": match.group(1), "name": name, "password": PASSWORD}
    assert (await http.post("/console/sign-in", data=form)).status_code == 303


async def test_decrypted_v3_content_is_for_admins_and_audited(shop: Shop) -> None:
    operators = OperatorStore(shop.context.store.engine)
    hashed = hash_password(PASSWORD)
    for name, role in (("ada", Role.ADMIN), ("sam", Role.SUPPORT)):
        operators.add(name, role, hashed, utcnow())
    order = await shop.create_order(1500, "v3 tea")
    await shop.sim.pay(code_url=order["code_url"])
    await shop.sim.deliver_due_notifications()
    with shop.context.store.engine.connect() as conn:
        note_id, api, outcome = conn.execute(
            sa.text("SELECT id, api, outcome FROM notifications_received")
        ).one()
    assert (api, outcome) == ("v3-payment", "applied")
    path = f"/console/notifications/{note_id}"
    http = shop.http
    await sign_in(http, "sam")
    raw = await http.get(path)
    assert raw.status_code == 200
    assert "ciphertext" in raw.text
    assert 'id="decrypt"' not in raw.text  # not offered to support
    assert (await http.get(path + "?decrypted=1")).status_code == 403
    await sign_in(http, "ada")
    shown = await http.get(path + "?decrypted=1")
    assert shown.status_code == 200
    assert order["out_trade_no"] in shown.text
    assert "SUCCESS" in shown.text
    creds = shop.sim.credentials
    for secret in (creds.api_v3_key.reveal(), creds.merchant_private_key_pem.reveal()):
        assert secret not in shown.text
        assert secret not in raw.text
    with shop.context.store.engine.connect() as conn:
        query = "SELECT operator_name, action, outcome FROM operator_actions WHERE action = :a"
        audit = conn.execute(sa.text(query), {"a": "view_decrypted"}).all()
    assert [tuple(row) for row in audit] == [("ada", "view_decrypted", "ok")]
    timeline = await http.get(f"/console/orders/{order['id']}")
    assert path in timeline.text
