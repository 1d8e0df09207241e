"""What ``scanpay simulator`` prints is ready to paste: scanpay's environment validates as
Settings, and the wechatpy and wechatpayv3 snippets (public-key and certificate mode), run
unchanged, talk to a simulator on a loopback port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scanpay.cli.simulator_cmd import banner, configuration, prepare_cert_dir
from scanpay.config import Settings

from .live import serve_simulator

SCANPAY = "scanpay (environment; also set SCANPAY_SHOP_API_KEY and SCANPAY_PUBLIC_BASE_URL)"


def run_snippet(text: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(text, "<banner>", "exec"), namespace)  # what a user pastes
    return namespace


def test_banner_says_where_and_prints_every_client(tmp_path: Path) -> None:
    with serve_simulator(tmp_path) as (sim, base_url):
        text = banner(sim, base_url)
        assert f"credentials:                    {tmp_path.resolve() / 'merchant.json'}" in text
        sections = configuration(sim, base_url)
        assert list(sections) == [
            SCANPAY,
            "wechatpy (API v2)",
            "wechatpayv3 (API v3, public-key mode)",
            "wechatpayv3 (API v3, certificate mode)",
        ]
        for name, body in sections.items():
            assert f"# --- {name} ---\n{body}" in text


def test_scanpay_environment_is_valid_settings(tmp_path: Path) -> None:
    with serve_simulator(tmp_path) as (sim, base_url):
        lines = configuration(sim, base_url)[SCANPAY].splitlines()
    values = {
        key.removeprefix("SCANPAY_").lower(): value
        for key, _, value in (line.partition("=") for line in lines)
    }
    settings = Settings(**values, shop_api_key="k" * 20)  # type: ignore[arg-type]
    creds = sim.credentials
    assert settings.wechat_base_url == base_url
    assert settings.api_version == "v3"
    assert settings.api_v3_key is not None
    assert settings.api_v3_key.get_secret_value() == creds.api_v3_key.reveal()
    assert settings.merchant_key_file is not None
    assert settings.merchant_key_file.read_text() == creds.merchant_private_key_pem.reveal()
    assert settings.wechatpay_public_key_file is not None
    assert settings.wechatpay_public_key_file.read_text() == creds.wechatpay_public_key_pem
    assert settings.wechatpay_public_key_id == creds.wechatpay_public_key_id


def test_python_snippets_run_against_the_simulator(tmp_path: Path) -> None:
    with serve_simulator(tmp_path) as (sim, base_url):
        prepare_cert_dir(sim)
        sections = configuration(sim, base_url)

        client = run_snippet(sections["wechatpy (API v2)"])["client"]
        created = client.order.create(
            trade_type="NATIVE",
            body="Tea",
            total_fee=1,
            notify_url="http://127.0.0.1:9/notify",
            product_id="tea",
            client_ip="127.0.0.1",
            out_trade_no="banner-v2",
        )
        assert created["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
        assert client.order.query(out_trade_no="banner-v2")["trade_state"] == "NOTPAY"

        for number, mode in enumerate(["public-key mode", "certificate mode"]):
            pay = run_snippet(sections[f"wechatpayv3 (API v3, {mode})"])["pay"]
            out_trade_no = f"banner-v3-{number}"
            code, message = pay.pay(
                description="Tea", out_trade_no=out_trade_no, amount={"total": 1}
            )
            assert code == 200, message
            code, message = pay.query(out_trade_no=out_trade_no)  # verified by the SDK
            assert code == 200, message
            assert json.loads(message)["trade_state"] == "NOTPAY"
