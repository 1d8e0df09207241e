"""Unmodified wechatpayv3 (API v3), only its gateway changed, against the simulator on a
loopback port: public-key mode and certificate mode (platform certificate in ``cert_dir``,
as a merchant keeps it). Prepay, pay, the notification passes wechatpayv3's ``callback``,
query shows SUCCESS, close."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from scanpay.simulator import Simulator

from .live import Inbox


def sdk(sim: Simulator, base_url: str, notify_url: str, cert_dir: Path | None) -> WeChatPay:
    creds = sim.credentials
    extra: dict[str, str] = {}
    if cert_dir is None:
        extra = {
            "public_key": creds.wechatpay_public_key_pem,
            "public_key_id": creds.wechatpay_public_key_id,
        }
    else:
        cert_dir.mkdir()
        (cert_dir / f"{creds.platform_serial_no}.pem").write_text(creds.platform_certificate_pem)
    pay = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=creds.mchid,
        private_key=creds.merchant_private_key_pem.reveal(),
        cert_serial_no=creds.merchant_serial_no,
        appid=creds.appid,
        apiv3_key=creds.api_v3_key.reveal(),
        notify_url=notify_url,
        cert_dir=str(cert_dir) if cert_dir else None,
        **extra,
    )
    pay._core._gate_way = base_url
    return pay


@pytest.mark.parametrize("mode", ["public-key", "certificate"])
def test_wechatpayv3_native_flow(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str], tmp_path: Path, mode: str
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    cert_dir = tmp_path / "certs" if mode == "certificate" else None
    pay = sdk(sim, base_url, notify_url, cert_dir)
    number = f"v3py-{mode}"

    code, message = pay.pay(description="Oolong, 100 g", out_trade_no=number, amount={"total": 880})
    assert code == 200, message
    code_url = json.loads(message)["code_url"]

    paid = httpx.post(f"{base_url}/sim/pay", json={"code_url": code_url}).json()
    assert paid["paid"] is True
    inbox.wait()
    result = pay.callback(inbox.headers[0], inbox.bodies[0])
    assert result is not None, "wechatpayv3 rejected the notification"
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"]["out_trade_no"] == number
    assert result["resource"]["transaction_id"] == paid["transaction_id"]
    assert result["resource"]["amount"]["total"] == 880

    code, message = pay.query(out_trade_no=number)
    assert code == 200, message
    assert json.loads(message)["trade_state"] == "SUCCESS"

    code, message = pay.pay(description="Tea", out_trade_no=number + "-2", amount={"total": 1})
    assert code == 200, message
    code, message = pay.close(out_trade_no=number + "-2")
    assert code == 204, message
    code, message = pay.query(out_trade_no=number + "-2")
    assert json.loads(message)["trade_state"] == "CLOSED"
