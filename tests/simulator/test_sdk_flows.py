"""Whole flows with unmodified SDKs, only their API host changed (issue 4's main "must show").

The simulator runs under uvicorn on a loopback port, the merchant's notify_url is a stdlib HTTP
server on another. Each flow: prepay -> the payer pays (``POST /sim/pay``) -> the payment
notification arrives and passes the SDK's own verification -> query shows SUCCESS -> refund ->
the refund notification arrives and opens with the SDK's own code -> the refund queries
SUCCESS -> another order is closed. wechatpayv3 sync and async, each in public-key mode and
certificate mode (sync: the platform certificate in ``cert_dir``; async: downloaded from the
simulator's ``/v3/certificates``), then wechatpy (API v2, refund over ``secapi`` with the
merchant certificate files it insists on; the simulator serves plain HTTP).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.async_ import AsyncWeChatPay
from wechatpayv3.async_ import WeChatPayType as AsyncPayType
from wechatpy.pay import WeChatPay as WeChatPayV2

from scanpay.simulator import Simulator
from scanpay.wechat.fields import BEIJING

from .live import READY_WAIT_SECONDS, Inbox, serve_simulator


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Simulator, str]]:
    with serve_simulator() as (sim, base_url):
        sim.refunds.settle_after = 0  # settle on the notifier's next tick: no real waiting
        yield sim, base_url


def arrival(inbox: Inbox, count: int) -> tuple[dict[str, str], bytes]:
    """Block until ``count`` notifications have arrived; the last one (headers, body)."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while len(inbox.bodies) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"notification {count} did not arrive")
        time.sleep(0.01)
    return inbox.headers[count - 1], inbox.bodies[count - 1]


async def async_arrival(inbox: Inbox, count: int) -> tuple[dict[str, str], bytes]:
    return await asyncio.to_thread(arrival, inbox, count)


def sim_pay(base_url: str, code_url: str) -> dict[str, Any]:
    paid: dict[str, Any] = httpx.post(f"{base_url}/sim/pay", json={"code_url": code_url}).json()
    assert paid["paid"] is True, paid
    return paid


def v3_options(
    sim: Simulator, notify_url: str, mode: str, cert_dir: Path, *, asynchronous: bool = False
) -> dict[str, Any]:
    creds = sim.credentials
    options: dict[str, Any] = {
        # the async package has its own WeChatPayType enum: the sync one is not accepted
        "wechatpay_type": AsyncPayType.NATIVE if asynchronous else WeChatPayType.NATIVE,
        "mchid": creds.mchid,
        "private_key": creds.merchant_private_key_pem.reveal(),
        "cert_serial_no": creds.merchant_serial_no,
        "appid": creds.appid,
        "apiv3_key": creds.api_v3_key.reveal(),
        "notify_url": notify_url,
    }
    if mode == "public-key":
        options["public_key"] = creds.wechatpay_public_key_pem
        options["public_key_id"] = creds.wechatpay_public_key_id
    else:
        options["cert_dir"] = str(cert_dir)
    return options


def today() -> str:
    return datetime.now(UTC).astimezone(BEIJING).date().isoformat()


MODES = ["public-key", "certificate"]


@pytest.mark.parametrize("mode", MODES)
def test_wechatpayv3_sync_whole_flow(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str], tmp_path: Path, mode: str
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    cert_dir = tmp_path / "certs"
    if mode == "certificate":  # the sync client would fetch certificates from the real host
        cert_dir.mkdir()
        (cert_dir / f"{sim.credentials.platform_serial_no}.pem").write_text(
            sim.credentials.platform_certificate_pem
        )
    pay = WeChatPay(**v3_options(sim, notify_url, mode, cert_dir))
    pay._core._gate_way = base_url
    number = f"sync-{mode}"

    code, message = pay.pay(description="Longjing", out_trade_no=number, amount={"total": 1200})
    assert code == 200, message
    paid = sim_pay(base_url, json.loads(message)["code_url"])
    headers, body = arrival(inbox, 1)
    payment = pay.callback(headers, body)
    assert payment is not None, "wechatpayv3 rejected the payment notification"
    assert payment["event_type"] == "TRANSACTION.SUCCESS"
    assert payment["resource"]["transaction_id"] == paid["transaction_id"]
    code, message = pay.query(out_trade_no=number)
    assert (code, json.loads(message)["trade_state"]) == (200, "SUCCESS")

    code, message = pay.refund(
        out_refund_no=f"{number}-r1", amount={"refund": 200, "total": 1200, "currency": "CNY"},
        out_trade_no=number, reason="sample",
    )  # fmt: skip
    assert code == 200, message
    assert json.loads(message)["status"] == "PROCESSING"
    headers, body = arrival(inbox, 2)
    refund = pay.callback(headers, body)
    assert refund is not None, "wechatpayv3 rejected the refund notification"
    assert refund["event_type"] == "REFUND.SUCCESS"
    assert refund["resource"]["out_refund_no"] == f"{number}-r1"
    assert refund["resource"]["refund_status"] == "SUCCESS"
    assert refund["resource"]["amount"]["refund"] == 200
    code, message = pay.query_refund(out_refund_no=f"{number}-r1")
    assert (code, json.loads(message)["status"]) == (200, "SUCCESS")
    code, message = pay.query(out_trade_no=number)
    assert json.loads(message)["trade_state"] == "REFUND"

    code, message = pay.trade_bill(bill_date=today())  # tar_type GZIP by default
    assert code == 200, message
    descriptor = json.loads(message)
    code, content = pay.download_bill(descriptor["download_url"])
    assert code == 200
    assert f"`{number}".encode() in gzip.decompress(content)

    code, message = pay.pay(description="Tea", out_trade_no=f"{number}-2", amount={"total": 1})
    assert code == 200, message
    code, message = pay.close(out_trade_no=f"{number}-2")
    assert code == 204, message
    code, message = pay.query(out_trade_no=f"{number}-2")
    assert json.loads(message)["trade_state"] == "CLOSED"


@pytest.mark.parametrize("mode", MODES)
async def test_wechatpayv3_async_whole_flow(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str], tmp_path: Path, mode: str
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    options = v3_options(sim, notify_url, mode, tmp_path / "downloaded", asynchronous=True)
    pay = AsyncWeChatPay(**options)
    pay._core._gate_way = base_url  # before entering: certificate mode downloads on entry
    number = f"async-{mode}"
    async with pay:
        code, message = await pay.pay(
            description="Biluochun", out_trade_no=number, amount={"total": 900}
        )
        assert code == 200, message
        paid = await asyncio.to_thread(sim_pay, base_url, json.loads(message)["code_url"])
        headers, body = await async_arrival(inbox, 1)
        payment = pay.callback(headers, body)
        assert payment is not None, "wechatpayv3 (async) rejected the payment notification"
        assert payment["resource"]["transaction_id"] == paid["transaction_id"]
        code, message = await pay.query(out_trade_no=number)
        assert (code, json.loads(message)["trade_state"]) == (200, "SUCCESS")

        code, message = await pay.refund(
            out_refund_no=f"{number}-r1", amount={"refund": 900, "total": 900, "currency": "CNY"},
            transaction_id=paid["transaction_id"],
        )  # fmt: skip
        assert code == 200, message
        headers, body = await async_arrival(inbox, 2)
        refund = pay.callback(headers, body)
        assert refund is not None, "wechatpayv3 (async) rejected the refund notification"
        assert refund["resource"]["out_refund_no"] == f"{number}-r1"
        code, message = await pay.query_refund(out_refund_no=f"{number}-r1")
        assert (code, json.loads(message)["status"]) == (200, "SUCCESS")
        code, message = await pay.refund(
            out_refund_no=f"{number}-r2", amount={"refund": 1, "total": 900, "currency": "CNY"},
            out_trade_no=number,
        )  # fmt: skip
        assert code == 400, message  # nothing left to refund
        assert json.loads(message)["code"] == "INVALID_REQUEST"

        code, message = await pay.pay(
            description="Tea", out_trade_no=f"{number}-2", amount={"total": 1}
        )
        assert code == 200, message
        code, message = await pay.close(out_trade_no=f"{number}-2")
        assert code == 204, message
        code, message = await pay.query(out_trade_no=f"{number}-2")
        assert json.loads(message)["trade_state"] == "CLOSED"
    if mode == "certificate":
        assert [p.name for p in (tmp_path / "downloaded").iterdir()] == [
            f"{sim.credentials.platform_serial_no}.pem"
        ]


def test_wechatpy_whole_flow(
    live: tuple[Simulator, str], live_receiver: tuple[Inbox, str], tmp_path: Path
) -> None:
    sim, base_url = live
    inbox, notify_url = live_receiver
    creds = sim.credentials
    cert_file, key_file = tmp_path / "apiclient_cert.pem", tmp_path / "apiclient_key.pem"
    cert_file.write_text(creds.merchant_certificate_pem)
    key_file.write_text(creds.merchant_private_key_pem.reveal())
    client = WeChatPayV2(
        appid=creds.appid, api_key=creds.api_v2_key.reveal(), mch_id=creds.mchid,
        mch_cert=str(cert_file), mch_key=str(key_file),
    )  # fmt: skip
    client.API_BASE_URL = base_url + "/"

    created = client.order.create(
        trade_type="NATIVE", body="Tieguanyin", total_fee=1500, notify_url=notify_url,
        product_id="tgy", client_ip="127.0.0.1", out_trade_no="wechatpy-flow-1",
    )  # fmt: skip
    paid = sim_pay(base_url, created["code_url"])
    _, body = arrival(inbox, 1)
    payment = client.parse_payment_result(body)
    assert payment["transaction_id"] == paid["transaction_id"]
    assert client.order.query(out_trade_no="wechatpy-flow-1")["trade_state"] == "SUCCESS"

    applied = client.refund.apply(
        total_fee=1500, refund_fee=500, out_refund_no="wechatpy-flow-1-r",
        out_trade_no="wechatpy-flow-1", notify_url=notify_url,
    )  # fmt: skip
    assert applied["result_code"] == "SUCCESS"
    assert int(applied["refund_fee"]) == 500
    _, body = arrival(inbox, 2)
    refund = client.parse_refund_notify_result(body)
    assert refund["out_refund_no"] == "wechatpy-flow-1-r"
    assert refund["refund_id"] == applied["refund_id"]
    assert (refund["refund_fee"], refund["refund_status"]) == (500, "SUCCESS")
    queried = client.refund.query(out_refund_no="wechatpy-flow-1-r")
    assert queried["refund_status_0"] == "SUCCESS"
    assert client.order.query(out_trade_no="wechatpy-flow-1")["trade_state"] == "REFUND"

    client.order.create(
        trade_type="NATIVE", body="Tea", total_fee=1, notify_url=notify_url,
        product_id="tea", client_ip="127.0.0.1", out_trade_no="wechatpy-flow-2",
    )  # fmt: skip
    assert client.order.close(out_trade_no="wechatpy-flow-2")["result_code"] == "SUCCESS"
    assert client.order.query(out_trade_no="wechatpy-flow-2")["trade_state"] == "CLOSED"
