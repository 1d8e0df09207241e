"""Issue 15's fidelity items that need no merchant service: fault settings, the clock offset
and the signature clock survive a restart; the v3 request-signature window can follow the
test clock (answers and notifications then carry test-clock timestamps too)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.errors import ConfigurationError
from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import FaultSpec, parse_fault
from scanpay.simulator.ledger import Order
from scanpay.wechat.keys import load_private_key
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v3.sign import V3Merchant, build_authorization
from scanpay.wechat.v3.transactions import NativeOrder

from .conftest import make_v3_client

START = datetime(2025, 3, 1, 2, 0, 0, tzinfo=UTC)  # far from real time on purpose


async def control(sim: Simulator, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_faults_clock_and_signature_clock_survive_a_restart(tmp_path: Path) -> None:
    first = Simulator.create(tmp_path)
    settings = {
        "faults": {
            "system_error": {"value": 1, "times": 3, "path": "/pay/"},
            "drop_notifications": 0.5,
            "rotate_certificate": 3600,
        },
        "seed": 7,
    }
    await control(first, "POST", "/sim/faults", settings)
    first.faults.for_order("order-9", [_spec("bad_signature")])
    # one firing counts system_error down to 2
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first.app), base_url="http://sim.test"
    ) as http:
        await http.post("/pay/orderquery", content=b"<xml></xml>")
    await control(first, "POST", "/sim/clock/advance", {"seconds": 1800})
    await control(first, "POST", "/sim/clock/signatures", {"clock": "test"})
    await control(first, "POST", "/sim/refunds/outcome", {"outcome": "CHANGE"})
    before = await control(first, "GET", "/sim/faults")
    clock_before = await control(first, "GET", "/sim/clock")
    assert before["faults"]["system_error"]["times"] == 2
    assert clock_before["offset_seconds"] == 1800
    first.close()

    second = Simulator.create(tmp_path)
    after = await control(second, "GET", "/sim/faults")
    assert after["faults"] == before["faults"]
    assert after["orders"] == {"order-9": {"bad_signature": _spec("bad_signature").to_json()}}
    assert after["seed"] == 7
    clock_after = await control(second, "GET", "/sim/clock")
    assert clock_after["offset_seconds"] == 1800
    assert clock_after["signature_clock"] == "test"
    assert second.signature_clock == "test"
    assert (await control(second, "GET", "/sim/refunds"))["outcome"] == "abnormal"
    # the timed rotation keeps the moment it was armed: 1800 s ago, due after 3600 s
    now = second.clock.timestamp()
    assert not second.faults.due_rotation(now)
    assert second.faults.due_rotation(now + 1800.5)
    # clearing is kept too
    await control(second, "DELETE", "/sim/faults")
    second.close()
    third = Simulator.create(tmp_path)
    assert (await control(third, "GET", "/sim/faults"))["faults"] == {}
    third.close()


def _spec(name: str) -> FaultSpec:
    return parse_fault(name)


def test_unreadable_saved_settings_are_refused(tmp_path: Path) -> None:
    sim = Simulator.create(tmp_path)
    sim.saved.save("faults", {"faults": {"no_such_fault": 1}})
    sim.close()
    with pytest.raises(ConfigurationError, match="saved simulator settings"):
        Simulator.create(tmp_path)


def order(sim: Simulator, number: str) -> NativeOrder:
    return NativeOrder(
        appid=sim.credentials.appid, mchid=sim.credentials.mchid, description="Tea",
        out_trade_no=number, notify_url="http://shop.test/notify/v3", total=100,
    )  # fmt: skip


async def query_at(sim: Simulator, number: str, timestamp: float) -> tuple[int, str]:
    """A v3 query signed at ``timestamp``: (HTTP status, error code or "")."""
    creds = sim.credentials
    merchant = V3Merchant(
        creds.mchid,
        creds.merchant_serial_no,
        load_private_key(creds.merchant_private_key_pem.reveal()),
    )
    target = f"/v3/pay/transactions/out-trade-no/{number}?mchid={creds.mchid}"
    auth = build_authorization(
        merchant, "GET", target, b"", timestamp=int(timestamp), nonce="N0NCE"
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        response = await http.get(target, headers={"Authorization": auth})
    code = response.json().get("code", "") if response.content else ""
    return response.status_code, str(code)


async def test_signature_window_follows_the_test_clock_when_asked(
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    sim = Simulator.create(clock=SimClock(start=START), credentials=credentials)
    real_now = datetime.now(UTC).timestamp()
    # by default the window is against real time: test-clock signatures are refused
    assert await query_at(sim, "clock-1", sim.clock.timestamp()) == (401, "SIGN_ERROR")
    assert await query_at(sim, "clock-1", real_now) == (404, "ORDER_NOT_EXIST")
    assert (await control(sim, "POST", "/sim/clock/signatures", {"clock": "test"}))[
        "signature_clock"
    ] == "test"
    # now a merchant on the test clock gets through, and the answers (stamped on the test
    # clock) pass its own window check: scanpay's V3Client with the same clock
    on_test_clock = make_v3_client(sim, clock=sim.clock.timestamp)
    code_url = await on_test_clock.create_native_order(order(sim, "clock-1"))
    assert code_url.startswith("weixin://")
    assert await query_at(sim, "clock-1", real_now) == (401, "SIGN_ERROR")
    # advancing the clock moves the window: a signature 10 minutes behind it is refused
    await control(sim, "POST", "/sim/clock/advance", {"seconds": 600})
    assert await query_at(sim, "clock-1", sim.clock.timestamp() - 600) == (401, "SIGN_ERROR")
    assert await query_at(sim, "clock-1", sim.clock.timestamp() - 200) == (200, "")
    assert (await on_test_clock.query_by_out_trade_no("clock-1")).out_trade_no == "clock-1"
    # and back to real time
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        bad = await http.post("/sim/clock/signatures", json={"clock": "sundial"})
        assert bad.status_code == 400
        assert sim.signature_clock == "test"
        await http.post("/sim/clock/signatures", json={"clock": "real"})
    assert await query_at(sim, "clock-1", datetime.now(UTC).timestamp()) == (200, "")
    await on_test_clock.aclose()
    sim.close()


async def test_public_key_ring_survives_a_restart(tmp_path: Path) -> None:
    first = Simulator.create(tmp_path)
    old_id = first.credentials.wechatpay_public_key_id
    rotated = await control(first, "POST", "/sim/public-keys/rotate", {"activate": True})
    new_id = rotated["key_id"]
    assert rotated["signing"] == new_id
    # the merchant's "download": the new public key beside merchant.json
    pem = (tmp_path / "wechatpay_public_keys" / f"{new_id}.pem").read_text()
    assert pem == first.v3.public_keys.public_pem(new_id)
    assert (tmp_path / "simulator" / "public_key_ring.json").stat().st_mode & 0o077 == 0
    first.close()
    second = Simulator.create(tmp_path)
    listing = await control(second, "GET", "/sim/public-keys")
    assert listing["signing"] == new_id
    assert [k["key_id"] for k in listing["keys"]] == [old_id, new_id]
    # answers in public-key mode are signed by the new key after the restart too
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=second.app), base_url="http://sim.test"
    ) as http:
        answer = await http.get("/v3/certificates", headers={"Wechatpay-Serial": old_id})
        refused = await http.post("/sim/public-keys/rotate", json={"activate": "yes"})
    # (unauthenticated: a signed 401, signed by the key that signs now)
    assert answer.status_code == 401
    assert answer.headers["wechatpay-serial"] == new_id
    assert refused.status_code == 400
    assert second.v3.notification_key(_v3_order(second))[0] == new_id
    assert (await control(second, "POST", "/sim/public-keys/retire"))["retired"] == [old_id]
    second.close()


def _v3_order(sim: Simulator) -> Order:
    fields: dict[str, Any] = {f.name: "" for f in dataclasses.fields(Order)}
    fields.update(sign_type=SignType.MD5, trade_state=TradeState.NOTPAY, total_fee=1,
                  code_issued_at=0.0, created_at=0.0, updated_at=0.0, transaction_id=None,
                  api="v3", signer="public_key")  # fmt: skip
    return Order(**fields)


def test_a_closed_simulator_leaves_a_shared_clock_alone(tmp_path: Path) -> None:
    clock = SimClock(start=START)
    first = Simulator.create(tmp_path, clock=clock)
    clock.advance(60)
    first.close()
    clock.advance(60)  # would write to the closed ledger if the first still listened
    second = Simulator.create(tmp_path, clock=clock)
    assert second.clock.offset == 120  # restored offset 60 is below the clock's own 120
    clock.advance(30)
    second.close()
    third = Simulator.create(tmp_path, clock=SimClock(start=START))
    assert third.clock.offset == 150
    third.close()
