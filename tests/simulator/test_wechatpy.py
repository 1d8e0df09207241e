"""Unmodified wechatpy (API v2), only its API base URL changed, against the simulator.

The simulator runs under uvicorn on a loopback port; wechatpy places a Native order, the
simulated payer pays, the signed notification reaches a local HTTP receiver and passes
wechatpy's own ``parse_payment_result``; the order query shows SUCCESS.
"""

from __future__ import annotations

import argparse
import re

import httpx
import pytest
from wechatpy.exceptions import InvalidSignatureException, WeChatPayException
from wechatpy.pay import WeChatPay

from scanpay.cli import pay_cmd
from scanpay.simulator import Simulator

from .live import Inbox


def wechatpy_client(sim: Simulator, base_url: str) -> WeChatPay:
    creds = sim.credentials
    client = WeChatPay(appid=creds.appid, api_key=creds.api_v2_key.reveal(), mch_id=creds.mchid)
    client.API_BASE_URL = base_url + "/"
    return client


def test_wechatpy_native_flow(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str]
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    client = wechatpy_client(sim, base_url)

    created = client.order.create(
        trade_type="NATIVE",
        body="Green tea, 250 g",
        total_fee=1250,
        notify_url=notify_url,
        product_id="tea-250",
        client_ip="127.0.0.1",
        out_trade_no="wechatpy-0001",
        attach="from wechatpy",
    )
    assert created["result_code"] == "SUCCESS"
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=\w{9}", created["code_url"])
    assert client.check_signature(dict(created))

    assert client.order.query(out_trade_no="wechatpy-0001")["trade_state"] == "NOTPAY"
    paid = httpx.post(f"{base_url}/sim/pay", json={"code_url": created["code_url"]}).json()
    assert paid["paid"] is True

    result = client.parse_payment_result(inbox.wait())
    assert result["out_trade_no"] == "wechatpy-0001"
    assert result["total_fee"] == 1250
    assert result["transaction_id"] == paid["transaction_id"]
    assert result["attach"] == "from wechatpy"
    assert result["result_code"] == "SUCCESS"

    queried = client.order.query(out_trade_no="wechatpy-0001")
    assert queried["trade_state"] == "SUCCESS"
    assert queried["transaction_id"] == paid["transaction_id"]


def test_wechatpy_rejects_a_notification_under_another_key(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str]
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    client = wechatpy_client(sim, base_url)
    created = client.order.create(
        trade_type="NATIVE", body="Tea", total_fee=1, notify_url=notify_url,
        product_id="tea", client_ip="127.0.0.1", out_trade_no="wechatpy-0002",
    )  # fmt: skip
    httpx.post(f"{base_url}/sim/pay", json={"code_url": created["code_url"]})
    stranger = WeChatPay(
        appid=sim.credentials.appid, api_key="x" * 32, mch_id=sim.credentials.mchid
    )
    with pytest.raises(InvalidSignatureException):
        stranger.parse_payment_result(inbox.wait())


def test_wechatpy_sees_wechat_errors(live: tuple[Simulator, str]) -> None:
    sim, base_url = live
    client = wechatpy_client(sim, base_url)
    with pytest.raises(WeChatPayException) as caught:
        client.order.query(out_trade_no="wechatpy-none")
    assert caught.value.errcode == "ORDERNOTEXIST"
    client.order.create(
        trade_type="NATIVE", body="Tea", total_fee=1, notify_url="http://127.0.0.1:9/n",
        product_id="tea", client_ip="127.0.0.1", out_trade_no="wechatpy-0003",
    )  # fmt: skip
    assert client.order.close(out_trade_no="wechatpy-0003")["result_code"] == "SUCCESS"
    assert client.order.query(out_trade_no="wechatpy-0003")["trade_state"] == "CLOSED"


def test_scanpay_pay_command(
    live: tuple[Simulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, base_url = live
    client = wechatpy_client(sim, base_url)
    created = client.order.create(
        trade_type="NATIVE", body="Tea", total_fee=1, notify_url="http://127.0.0.1:9/n",
        product_id="tea", client_ip="127.0.0.1", out_trade_no="cli-order-1",
    )  # fmt: skip
    parser = argparse.ArgumentParser()
    pay_cmd.configure(parser)

    def run(*argv: str) -> int:
        return pay_cmd.run(parser.parse_args(["--simulator", base_url, *argv]))

    assert run("--code-url", created["code_url"], "--outcome", "cancel") == 0
    assert "not paid" in capsys.readouterr().out
    assert run("--out-trade-no", "cli-order-1") == 0
    assert "cli-order-1: paid (SUCCESS)" in capsys.readouterr().out
    assert run("--out-trade-no", "cli-order-1") == 1
    assert "ORDER_PAID" in capsys.readouterr().err
    assert run("--out-trade-no", "no-such-order") == 1
    assert (
        pay_cmd.run(
            parser.parse_args(["--simulator", "http://127.0.0.1:9", "--out-trade-no", "abcdef"])
        )
        == 2
    )
