"""scanpay's own refund path against the simulator's mutual TLS (issue 15): the service,
configured as for WeChat (API v2, SCANPAY_MERCHANT_CERT_FILE / _KEY_FILE) with the simulator's
CA trusted through SSL_CERT_FILE (as the ``--tls`` banner says), pays and refunds an order over
HTTPS; the refund reaches ``/secapi/pay/refund`` with the merchant certificate."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from scanpay.simulator import Simulator
from scanpay.simulator.tls import prepare
from scanpay.web.app import create_app
from tests.simulator.live import free_port, serve_asgi
from tests.web.conftest import SHOP_KEY, SettingsFactory

AUTH = {"Authorization": f"Bearer {SHOP_KEY}"}


def wait_for(check: object, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_service_refunds_over_the_simulators_mutual_tls(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulator.create(tmp_path / "sim")
    sim.refunds.settle_after = 0
    creds = sim.credentials
    files = prepare(creds, ["127.0.0.1"])
    sim.require_client_certificate = True
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca_certificate))
    port = free_port()
    with serve_asgi(sim.app, "sim-tls", scheme="https", **files.uvicorn_options()) as sim_url:
        settings = make_settings(
            appid=creds.appid, mchid=creds.mchid, api_v2_key=creds.api_v2_key.reveal(),
            wechat_base_url=sim_url, public_base_url=f"http://127.0.0.1:{port}",
            reconciler_enabled=False,
            merchant_cert_file=creds.path("merchant_certificate"),
            merchant_key_file=creds.path("merchant_private_key"),
        )  # fmt: skip
        with serve_asgi(create_app(settings), "shop", port=port) as shop_url:
            made = httpx.post(
                f"{shop_url}/api/orders", json={"amount": 1500, "description": "TLS tea"},
                headers=AUTH,
            )  # fmt: skip
            assert made.status_code == 201, made.text
            order = made.json()
            sim.payer.pay(code_url=order["code_url"])
            order_url = f"{shop_url}/api/orders/{order['id']}"
            wait_for(lambda: httpx.get(order_url).json()["status"] == "paid", "the payment")
            refunded = httpx.post(
                f"{order_url}/refunds", json={"amount": 500},
                headers={**AUTH, "Idempotency-Key": "tls-refund"},
            )  # fmt: skip
            assert refunded.status_code == 201, refunded.text
            number = refunded.json()["out_refund_no"]
            assert sim.refunds.get(number) is not None  # it went through /secapi/ over mTLS

            def settled() -> bool:
                listed = httpx.get(f"{order_url}/refunds", headers=AUTH).json()["items"]
                return bool(listed) and listed[0]["status"] == "success"

            wait_for(settled, "the refund notification")
            assert httpx.get(order_url).json()["refunded_amount"] == 500
    sim.close()
