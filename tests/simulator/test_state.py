"""Credentials and ledger survive a restart; merchant.json follows the published contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import scanpay.simulator
from scanpay.client.v2 import V2Client
from scanpay.simulator import Simulator
from scanpay.wechat.states import TradeState

from .conftest import make_client, order

MERCHANT_KEYS = {
    "mchid", "appid", "api_v2_key", "api_v3_key", "merchant_serial_no", "merchant_private_key",
    "merchant_certificate", "platform_serial_no", "platform_certificate",
    "wechatpay_public_key_id", "wechatpay_public_key",
}  # fmt: skip


def test_public_api() -> None:
    assert scanpay.simulator.__all__ == [
        "RETRY_DELAYS",
        "MerchantCredentials",
        "PayOutcome",
        "PayResult",
        "SimClock",
        "Simulator",
        "generate_credentials",
    ]


def test_merchant_json_contract(tmp_path: Path) -> None:
    sim = Simulator.create(tmp_path)
    document = json.loads((tmp_path / "merchant.json").read_text())
    assert set(document) == MERCHANT_KEYS
    creds = sim.credentials
    assert document["mchid"] == creds.mchid
    assert re.fullmatch(r"[0-9A-Za-z]{32}", document["api_v2_key"])
    assert re.fullmatch(r"[0-9A-Za-z]{32}", document["api_v3_key"])
    assert re.fullmatch(r"PUB_KEY_ID_\d+", document["wechatpay_public_key_id"])
    for cert_key, serial_key in [
        ("merchant_certificate", "merchant_serial_no"),
        ("platform_certificate", "platform_serial_no"),
    ]:
        cert = x509.load_pem_x509_certificate((tmp_path / document[cert_key]).read_bytes())
        assert re.fullmatch(r"[0-9A-F]{40}", document[serial_key])
        assert int(document[serial_key], 16) == cert.serial_number
    key = serialization.load_pem_private_key(
        (tmp_path / document["merchant_private_key"]).read_bytes(), password=None
    )
    merchant_cert = x509.load_pem_x509_certificate(creds.merchant_certificate_pem.encode())
    assert key.public_key().public_numbers() == merchant_cert.public_key().public_numbers()  # type: ignore[union-attr]
    serialization.load_pem_public_key((tmp_path / document["wechatpay_public_key"]).read_bytes())
    assert (tmp_path / "merchant.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "apiclient_key.pem").stat().st_mode & 0o077 == 0
    sim.close()


def test_secrets_stay_out_of_reprs() -> None:
    sim = Simulator.create()
    text = repr(sim.credentials) + repr(sim) + repr(sim.keys)
    assert sim.credentials.api_v2_key.reveal() not in text
    assert sim.credentials.api_v3_key.reveal() not in text
    assert "PRIVATE KEY" not in text
    sim.close()


async def test_restart_keeps_orders_and_credentials(tmp_path: Path) -> None:
    first = Simulator.create(tmp_path)
    async with first, make_client(first) as v2:
        created = await v2.create_native_order(order("kept-order"))
        await v2.create_native_order(order("paid-order"))
        await first.pay(out_trade_no="paid-order")
    first_log = first.notification_log()
    first.close()

    second = Simulator.create(tmp_path)
    assert second.credentials == first.credentials
    async with second, make_client(second) as v2_again:
        assert isinstance(v2_again, V2Client)
        again = await v2_again.create_native_order(order("kept-order"))
        assert again.code_url == created.code_url
        paid = await v2_again.query_order(out_trade_no="paid-order")
        assert paid.trade_state is TradeState.SUCCESS
    assert [n["out_trade_no"] for n in second.notification_log()] == [
        n["out_trade_no"] for n in first_log
    ]
    second.close()


def test_certificate_rotations_survive_a_restart(tmp_path: Path) -> None:
    first = Simulator.create(tmp_path)
    original = first.credentials.platform_serial_no
    rotated = first.v3.keyring.rotate()
    first.close()

    second = Simulator.create(tmp_path)
    assert second.v3.keyring.serials() == [original, rotated]
    assert second.v3.keyring.current().serial == rotated
    assert second.credentials.platform_serial_no == original  # merchant.json is unchanged
    ring = tmp_path / "simulator" / "platform_ring.json"
    assert ring.stat().st_mode & 0o077 == 0
    assert second.v3.keyring.retire_old() == [original]
    second.close()

    third = Simulator.create(tmp_path)
    assert third.v3.keyring.serials() == [rotated]
    signed = third.v3.signed_headers(b"{}", "platform")
    assert signed["Wechatpay-Serial"] == rotated
    third.close()
