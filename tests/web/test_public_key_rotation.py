"""A WeChat Pay public key change (issue 15): the simulator announces a new ``PUB_KEY_ID_...``,
scanpay is configured with both keys, payments keep working while the old key signs and after
the new one takes over; a client that trusts only the old key is refused once it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.client.v3 import V3Client
from scanpay.errors import UnknownKeyError
from scanpay.simulator import PayOutcome, SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.web.app import create_app
from scanpay.wechat.keys import TrustStore, load_private_key, load_public_key
from tests.web.conftest import BASE_URL, LateASGITransport, SettingsFactory, Shop
from tests.web.v3kit import v3_settings


async def sim_post(sim: Simulator, path: str, body: Any = None) -> dict[str, Any]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        response = await http.post(path, json=body or {})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def old_key_client(sim: Simulator) -> V3Client:
    creds = sim.credentials
    trust = TrustStore()
    trust.add_public_key(
        creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
    )
    return V3Client(
        creds.mchid, creds.merchant_serial_no,
        load_private_key(creds.merchant_private_key_pem.reveal()), creds.api_v3_key, trust,
        base_url="http://sim.test", transport=httpx.ASGITransport(app=sim.app),
    )  # fmt: skip


async def test_scanpay_trusts_both_keys_during_a_change(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    late = LateASGITransport()
    sim = Simulator.create(notify_transport=late, clock=SimClock(), credentials=credentials)
    creds = sim.credentials
    old_id = creds.wechatpay_public_key_id
    # WeChat announces the new key; the old one still signs
    rotated = await sim_post(sim, "/sim/public-keys/rotate")
    new_id = rotated["key_id"]
    assert new_id.startswith("PUB_KEY_ID_")
    assert new_id != old_id
    assert rotated["signing"] == old_id
    new_pem = next(k["public_key"] for k in rotated["keys"] if k["key_id"] == new_id)
    new_file = tmp_path / "new_public_key.pem"
    new_file.write_text(new_pem)
    settings = make_settings(
        appid=creds.appid, mchid=creds.mchid, api_v2_key=creds.api_v2_key.reveal(),
        reconciler_enabled=False, wechatpay_new_public_key_id=new_id,
        wechatpay_new_public_key_file=new_file,
        **v3_settings(creds, tmp_path, public_key=True),
    )  # fmt: skip
    app = create_app(settings, wechat_transport=httpx.ASGITransport(app=sim.app))
    late.app = app
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    shop = Shop(app, sim, http, settings)
    old_only = old_key_client(sim)
    try:
        assert set(shop.context.client.v3.trust.public_key_ids) == {old_id, new_id}  # type: ignore[union-attr]
        before = await shop.create_order(300, "before the change")
        await sim.pay(code_url=before["code_url"], outcome=PayOutcome.SUCCESS)
        assert await sim.deliver_due_notifications() == 1
        assert (await http.get(f"/api/orders/{before['id']}")).json()["status"] == "paid"
        assert (await old_only.query_by_out_trade_no(before["out_trade_no"])).total == 300

        # the new key signs from now on
        activated = await sim_post(sim, "/sim/public-keys/activate")
        assert activated["signing"] == new_id
        after = await shop.create_order(400, "after the change")  # answer signed by new key
        await sim.pay(code_url=after["code_url"], outcome=PayOutcome.SUCCESS)
        assert await sim.deliver_due_notifications() == 1
        assert (await http.get(f"/api/orders/{after['id']}")).json()["status"] == "paid"
        assert all(n["attempts"][-1]["acknowledged"] for n in sim.notification_log())
        # a merchant who did not add the new key is refused, with advice
        with pytest.raises(UnknownKeyError, match="public key"):
            await old_only.query_by_out_trade_no(after["out_trade_no"])
        # the old key is retired at WeChat; scanpay keeps working on the new one
        retired = await sim_post(sim, "/sim/public-keys/retire")
        assert retired["retired"] == [old_id]
        third = await shop.create_order(500, "after retiring")
        assert third["code_url"].startswith("weixin://")
    finally:
        await old_only.aclose()
        await http.aclose()
        await app.state.scanpay.aclose()
        sim.close()


def test_new_key_settings_go_together(make_settings: SettingsFactory, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        make_settings(wechatpay_new_public_key_id="PUB_KEY_ID_0123")
    with pytest.raises(ValueError, match="PUB_KEY_ID"):
        make_settings(
            wechatpay_new_public_key_id="not-an-id", wechatpay_new_public_key_file=tmp_path / "k"
        )
