"""``scanpay doctor`` against scanpay's own notification endpoints (API v2, v3 public-key mode,
v3 certificate mode): every case passes, the order is paid exactly once, and the report's text
form and exit status say so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.cli.doctor_cmd import exit_status, render_text
from scanpay.cli.main import main
from scanpay.simulator import Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.web.app import create_app
from tests.simulator.live import free_port, serve_asgi
from tests.web.conftest import BASE_URL, SHOP_KEY, SettingsFactory, Shop
from tests.web.v3kit import MODES, open_shop, v3_settings

V2_CASES = {
    "bad_signature", "other_key", "truncated_body", "xml_entity", "xml_external_entity",
    "wrong_amount",
    "other_mch_id", "other_appid", "unknown_out_trade_no", "genuine", "duplicates",
    "after_delay", "out_of_order",
}  # fmt: skip
V3_CASES = (V2_CASES - {"xml_entity", "xml_external_entity"}) | {
    "stale_timestamp",
    "unknown_serial",
    "malformed_resource",
}


@pytest.fixture(params=MODES)
async def any_shop(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for shop in open_shop(make_settings, tmp_path, credentials, str(request.param)):
        yield shop


@pytest.fixture
async def v2_shop(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for shop in open_shop(make_settings, tmp_path, credentials, "v2"):
        yield shop


async def doctor(shop: Shop, payload: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shop.sim.app), base_url="http://sim.test"
    ) as sim:
        return await sim.post("/sim/doctor", json=payload, timeout=60)


async def test_every_case_passes_against_scanpay(any_shop: Shop) -> None:
    shop = any_shop
    order = await shop.create_order(1250, "Doctor's tea")
    answer = await doctor(
        shop,
        {
            "out_trade_no": order["out_trade_no"],
            "status_url": f"{BASE_URL}/api/orders/{order['id']}",
            "delay_seconds": 0.05,
        },
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    verdicts = {case["name"]: case["verdict"] for case in report["cases"]}
    expected = V2_CASES if shop.settings.api_version == "v2" else V3_CASES
    assert set(verdicts) == expected
    bad = [c for c in report["cases"] if c["verdict"] != "pass"]
    assert bad == [], [(c["name"], c["why"], c["status_after"]) for c in bad]
    assert report["ok"] is True
    assert exit_status(report) == 0
    # refused cases really were refused, the others acknowledged
    for case in report["cases"]:
        if case["expect"] == "refuse":
            assert case["acknowledged"] == 0, case
        if case["expect"] == "acknowledge":
            assert case["acknowledged"] == len(case["answers"]), case
    assert [c["acknowledged"] for c in report["cases"] if c["name"] == "duplicates"] == [10]
    assert shop.event_types(order["id"]).count("paid") == 1
    status = (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"]
    assert status == "paid"
    text = render_text(report)
    assert "[PASS] genuine (must be acknowledged)" in text
    assert "0 failed" in text
    # the simulator's ledger agrees: the order is paid there too
    assert shop.sim.ledger.order(order["out_trade_no"]).trade_state.value == "SUCCESS"  # type: ignore[union-attr]


async def test_doctor_refuses_what_it_cannot_check(v2_shop: Shop) -> None:
    shop = v2_shop
    missing = await doctor(shop, {"out_trade_no": "no-such-order"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "ORDER_NOT_EXIST"
    assert (await doctor(shop, {"out_trade_no": 5})).status_code == 400
    order = await shop.create_order()
    wrong_api = await doctor(shop, {"out_trade_no": order["out_trade_no"], "api": "v3"})
    assert wrong_api.status_code == 400
    assert wrong_api.json()["error"] == "API_MISMATCH"
    bad_url = await doctor(shop, {"out_trade_no": order["out_trade_no"], "status_url": "ftp://x"})
    assert bad_url.status_code == 400
    missing_status = await doctor(
        shop,
        {"out_trade_no": order["out_trade_no"], "status_url": f"{BASE_URL}/api/orders/nope"},
    )
    assert missing_status.status_code == 400
    assert missing_status.json()["error"] == "STATUS_URL_UNUSABLE"
    # nothing was sent: the order is still unpaid at both ends
    assert shop.sim.notification_log() == []
    assert (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"] == "pending"


def test_doctor_command_against_the_served_service(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real thing over loopback HTTP: the simulator and the service (API v3, public-key
    mode) each served by uvicorn, the order made through the shop API, then the command."""
    sim = Simulator.create(credentials=credentials)
    creds = sim.credentials
    port = free_port()
    with serve_asgi(sim.app, "sim") as sim_url:
        sim.public_url = sim_url
        settings = make_settings(
            appid=creds.appid, mchid=creds.mchid, api_v2_key=creds.api_v2_key.reveal(),
            wechat_base_url=sim_url, public_base_url=f"http://127.0.0.1:{port}",
            reconciler_enabled=False, **v3_settings(creds, tmp_path, public_key=True),
        )  # fmt: skip
        app = create_app(settings)
        with serve_asgi(app, "shop", port=port) as shop_url:
            made = httpx.post(
                f"{shop_url}/api/orders",
                json={"amount": 2300, "description": "Served tea"},
                headers={"Authorization": f"Bearer {SHOP_KEY}"},
            )
            assert made.status_code == 201, made.text
            order = made.json()
            status_url = f"{shop_url}/api/orders/{order['id']}"
            number = order["out_trade_no"]
            code = main(["doctor", "--simulator", sim_url, "--out-trade-no", number,
                         "--status-url", status_url, "--delay", "0.2"])  # fmt: skip
            out = capsys.readouterr().out
            assert code == 0, out
            assert f"API v3 notifications for order {order['out_trade_no']}" in out
            assert "[PASS] stale_timestamp (must be refused)" in out
            assert "14 passed, 0 failed, 0 not judged" in out
            assert httpx.get(status_url).json()["status"] == "paid"
    sim.close()
