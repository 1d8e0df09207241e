"""Platform-certificate rotation mid-run and "new merchant" mode, through scanpay's V3Client and
through unmodified wechatpayv3, sync and async (gateway changed, simulator on a loopback port)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.async_ import AsyncWeChatPay
from wechatpayv3.async_ import WeChatPayType as AsyncPayType

from scanpay.errors import UnknownKeyError
from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.faults import parse_fault
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.notify import PaymentNotice

from .conftest import V3Receiver
from .live import Inbox
from .test_v3_flow import native, v3_client


async def test_scanpay_certificate_mode_follows_a_rotation(
    v3_sim: Simulator, v3_receiver: V3Receiver, raw_v3: httpx.AsyncClient
) -> None:
    sim, receiver = v3_sim, v3_receiver
    old = sim.credentials.platform_serial_no
    async with v3_client(sim, public_key_mode=False) as client:
        await client.create_native_order(native(sim))
        assert client.trust.certificate_serials == (old,)

        rotated = (await raw_v3.post("/sim/certificates/rotate", json={})).json()
        new = rotated["serial"]
        assert rotated["certificates"] == [old, new]
        assert rotated["signing_serial"] == new

        # the next answer is signed by the new certificate: the client downloads it
        unpaid = await client.query_by_out_trade_no("v3-order-01")
        assert unpaid.trade_state is TradeState.NOTPAY
        assert set(client.trust.certificate_serials) == {old, new}

        await sim.pay(out_trade_no="v3-order-01")
        await sim.deliver_due_notifications()
        [(headers, body)] = receiver.received
        assert headers["wechatpay-serial"] == new
        notice = await client.verify_notification(headers, body)
        assert isinstance(notice, PaymentNotice)

        retired = (await raw_v3.post("/sim/certificates/retire")).json()
        assert retired["retired"] == [old]
        assert retired["certificates"] == [new]
        assert await client.refresh_certificates() == [new]


@pytest.fixture
async def raw_v3(v3_sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=v3_sim.app), base_url="http://sim.test"
    ) as http:
        yield http


async def test_rotation_on_a_timer(v3_sim: Simulator, clock: SimClock) -> None:
    sim = v3_sim
    sim.faults.set([parse_fault("rotate_certificate=600")], now=clock.timestamp())
    before = sim.v3.keyring.current().serial
    clock.advance(599)
    await sim.deliver_due_notifications()
    assert sim.v3.keyring.current().serial == before
    clock.advance(1)
    await sim.deliver_due_notifications()
    assert sim.v3.keyring.serials()[0] == before
    assert sim.v3.keyring.current().serial != before
    assert sim.faults.snapshot()["faults"] == {}  # it happens once


async def test_new_merchant_mode(
    v3_sim: Simulator, v3_receiver: V3Receiver, raw_v3: httpx.AsyncClient
) -> None:
    sim, receiver = v3_sim, v3_receiver
    await raw_v3.post("/sim/faults", json={"scenario": "new_merchant"})
    async with v3_client(sim, public_key_mode=False) as certificate_mode:
        assert await certificate_mode.refresh_certificates() == []  # none: a valid answer
        with pytest.raises(UnknownKeyError, match="public-key mode"):  # key it was never given
            await certificate_mode.create_native_order(native(sim, "v3-cert-mode"))
    async with v3_client(sim, public_key_mode=True) as public_key_mode:
        await public_key_mode.create_native_order(native(sim))
        await sim.pay(out_trade_no="v3-order-01")
        await sim.deliver_due_notifications()
        [(headers, body)] = receiver.received
        assert headers["wechatpay-serial"] == sim.credentials.wechatpay_public_key_id
        assert isinstance(await public_key_mode.verify_notification(headers, body), PaymentNotice)
        paid = await public_key_mode.query_by_out_trade_no("v3-order-01")
        assert paid.trade_state is TradeState.SUCCESS


# --- unmodified wechatpayv3 on a loopback port --------------------------------------------


def certificate_mode_sdk(
    sim: Simulator, base_url: str, notify_url: str, cert_dir: Path
) -> WeChatPay:
    creds = sim.credentials
    pay = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=creds.mchid,
        private_key=creds.merchant_private_key_pem.reveal(),
        cert_serial_no=creds.merchant_serial_no,
        appid=creds.appid,
        apiv3_key=creds.api_v3_key.reveal(),
        notify_url=notify_url,
        cert_dir=str(cert_dir),
    )
    pay._core._gate_way = base_url
    return pay


def test_wechatpayv3_picks_up_a_rotated_certificate(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str], tmp_path: Path
) -> None:
    sim, base_url = live
    receiver, notify_url = live_receiver
    creds = sim.credentials
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / f"{creds.platform_serial_no}.pem").write_text(creds.platform_certificate_pem)
    pay = certificate_mode_sdk(sim, base_url, notify_url, cert_dir)

    code, message = pay.pay(description="Tea", out_trade_no="rotation-1", amount={"total": 5})
    assert code == 200, message

    new = httpx.post(f"{base_url}/sim/certificates/rotate", json={"keep_old": True}).json()
    new_serial = new["serial"]
    try:
        code, message = pay.query(out_trade_no="rotation-1")  # signed by the new certificate
        assert code == 200, message
        assert json.loads(message)["trade_state"] == "NOTPAY"
        assert (cert_dir / f"{new_serial}.pem").exists()  # wechatpayv3 stored what it fetched

        code_url = json.loads(pay.pay(description="Tea", out_trade_no="rotation-2",
                                      amount={"total": 6})[1])["code_url"]  # fmt: skip
        assert httpx.post(f"{base_url}/sim/pay", json={"code_url": code_url}).json()["paid"]
        receiver.wait()
        assert receiver.headers[0]["Wechatpay-Serial"] == new_serial
        result = pay.callback(receiver.headers[0], receiver.bodies[0])
        assert result is not None, "wechatpayv3 rejected a notification signed by the new cert"
        assert result["resource"]["out_trade_no"] == "rotation-2"
    finally:
        httpx.post(f"{base_url}/sim/certificates/retire")


def test_wechatpayv3_in_new_merchant_mode(live: tuple[Simulator, str], tmp_path: Path) -> None:
    sim, base_url = live
    creds = sim.credentials
    httpx.post(f"{base_url}/sim/faults", json={"faults": {"new_merchant": 1}})
    try:
        # a merchant that kept an old platform certificate on disk: wechatpayv3 starts from it
        cert_dir = tmp_path / "certs"
        cert_dir.mkdir()
        (cert_dir / "old.pem").write_text(creds.platform_certificate_pem)
        stale = certificate_mode_sdk(sim, base_url, "http://127.0.0.1:9/notify", cert_dir)
        stale._core._update_certificates()
        assert stale._core._certificates == []  # /v3/certificates lists nothing
        with pytest.raises(Exception, match="failed to verify the signature"):
            stale.pay(description="Tea", out_trade_no="new-merchant-0", amount={"total": 1})
        pay = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=creds.mchid,
            private_key=creds.merchant_private_key_pem.reveal(),
            cert_serial_no=creds.merchant_serial_no,
            appid=creds.appid,
            apiv3_key=creds.api_v3_key.reveal(),
            notify_url="http://127.0.0.1:9/notify",
            public_key=creds.wechatpay_public_key_pem,
            public_key_id=creds.wechatpay_public_key_id,
        )
        pay._core._gate_way = base_url
        code, message = pay.pay(description="Tea", out_trade_no="new-merchant", amount={"total": 1})
        assert code == 200, message
    finally:
        httpx.delete(f"{base_url}/sim/faults")


async def test_wechatpayv3_async_picks_up_a_rotated_certificate(
    live: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, base_url = live
    creds = sim.credentials
    pay = AsyncWeChatPay(
        wechatpay_type=AsyncPayType.NATIVE,
        mchid=creds.mchid,
        private_key=creds.merchant_private_key_pem.reveal(),
        cert_serial_no=creds.merchant_serial_no,
        appid=creds.appid,
        apiv3_key=creds.api_v3_key.reveal(),
        notify_url="http://127.0.0.1:9/notify",
        cert_dir=str(tmp_path / "certs"),
    )
    pay._core._gate_way = base_url  # certificate mode downloads /v3/certificates on entry
    async with pay, httpx.AsyncClient(base_url=base_url) as control:
        code, message = await pay.pay(
            description="Tea", out_trade_no="rot-async", amount={"total": 2}
        )
        assert code == 200, message
        rotated = (await control.post("/sim/certificates/rotate", json={})).json()
        try:
            code, message = await pay.query(out_trade_no="rot-async")
            assert code == 200, message
            assert json.loads(message)["trade_state"] == "NOTPAY"
            assert (tmp_path / "certs" / f"{rotated['serial']}.pem").exists()
        finally:
            await control.post("/sim/certificates/retire")
