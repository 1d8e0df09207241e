"""Mutual TLS on ``/secapi/`` (issue 15): the simulator serves HTTPS with its own CA and, like
WeChat's front, serves refunds only to a caller presenting the merchant's API certificate.
wechatpy with its usual ``mch_cert``/``mch_key`` (and the CA trusted through
``REQUESTS_CA_BUNDLE``, as the banner says) and scanpay's V2Client both refund; callers
without the certificate, or with another one, are refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay

from scanpay.cli.main import build_parser
from scanpay.cli.simulator_cmd import trust_banner
from scanpay.client.v2 import ClientCertificate, V2Client
from scanpay.simulator import Simulator
from scanpay.simulator.tls import prepare
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refunds import RefundRequest

from .live import serve_asgi


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulator, str, Path]]:
    state = tmp_path_factory.mktemp("sim-tls")
    sim = Simulator.create(state)
    sim.refunds.settle_after = 0
    files = prepare(sim.credentials, ["127.0.0.1"])
    sim.require_client_certificate = True
    with serve_asgi(sim.app, "sim-https", scheme="https", **files.uvicorn_options()) as url:
        sim.public_url = url
        yield sim, url, files.ca_certificate
    sim.close()


def wechatpy_client(sim: Simulator, url: str, *, with_cert: bool) -> WeChatPay:
    creds = sim.credentials
    extra = {}
    if with_cert:
        extra = {
            "mch_cert": str(creds.path("merchant_certificate")),
            "mch_key": str(creds.path("merchant_private_key")),
        }
    client = WeChatPay(
        appid=creds.appid, api_key=creds.api_v2_key.reveal(), mch_id=creds.mchid, **extra
    )
    client.API_BASE_URL = url + "/"
    return client


def paid_order(sim: Simulator, client: WeChatPay, number: str) -> None:
    created = client.order.create(
        trade_type="NATIVE", body="Tea", total_fee=900, notify_url="http://127.0.0.1:9/n",
        product_id="tea", client_ip="127.0.0.1", out_trade_no=number,
    )  # fmt: skip
    sim.payer.pay(code_url=created["code_url"])


def test_wechatpy_refunds_over_mutual_tls(
    https: tuple[Simulator, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, url, ca = https
    assert url.startswith("https://")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # what the banner tells you to set
    client = wechatpy_client(sim, url, with_cert=True)
    paid_order(sim, client, "mtls-1")
    applied = client.refund.apply(
        total_fee=900, refund_fee=300, out_refund_no="mtls-1-r", out_trade_no="mtls-1"
    )
    assert applied["result_code"] == "SUCCESS"
    assert sim.refunds.get("mtls-1-r") is not None
    # the same SDK without the certificate files: WeChat's front refuses the refund
    bare = wechatpy_client(sim, url, with_cert=False)
    assert bare.order.query(out_trade_no="mtls-1")["trade_state"] in ("SUCCESS", "REFUND")
    with pytest.raises(WeChatPayException) as refused:
        bare.refund.apply(
            total_fee=900, refund_fee=100, out_refund_no="mtls-1-r2", out_trade_no="mtls-1"
        )
    assert refused.value.response.status_code == 400
    assert refused.value.response.text == "No required SSL certificate was sent"
    assert sim.refunds.get("mtls-1-r2") is None


def stranger_certificate(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the merchant")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "stranger_cert.pem", folder / "stranger_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_callers_without_the_merchant_certificate_are_refused(
    https: tuple[Simulator, str, Path], tmp_path: Path
) -> None:
    sim, url, ca = https
    before = len(sim.refunds.all())
    verify = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=verify) as http:
        answer = http.post(f"{url}/secapi/pay/refund", content=b"<xml></xml>")
        assert answer.status_code == 400
        assert answer.text == "No required SSL certificate was sent"
        # other paths need no client certificate
        assert http.get(f"{url}/sim/clock").status_code == 200
    cert_path, key_path = stranger_certificate(tmp_path)
    stranger = ssl.create_default_context(cafile=str(ca))
    stranger.load_cert_chain(str(cert_path), str(key_path))
    with httpx.Client(verify=stranger) as http, pytest.raises(httpx.HTTPError):
        http.post(f"{url}/secapi/pay/refund", content=b"<xml></xml>").raise_for_status()
    assert len(sim.refunds.all()) == before
    # an untrusting client does not accept the simulator's certificate
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"{url}/sim/clock")


def test_scanpay_v2_client_refunds_over_mutual_tls(https: tuple[Simulator, str, Path]) -> None:
    sim, url, ca = https
    creds = sim.credentials

    async def flow() -> str:
        async with V2Client(
            creds.v2_merchant(),
            base_url=url,
            client_cert=ClientCertificate.from_pem_files(
                creds.path("merchant_certificate"), creds.path("merchant_private_key")
            ),
            server_ca_pem=ca.read_text(),
        ) as v2:
            created = await v2.create_native_order(
                UnifiedOrder(out_trade_no="mtls-2", body="Tea", total_fee=900,
                             notify_url="http://127.0.0.1:9/n", product_id="tea")
            )  # fmt: skip
            sim.payer.pay(code_url=created.code_url)
            result = await v2.refund(
                RefundRequest(
                    out_refund_no="mtls-2-r", total_fee=900, refund_fee=900, out_trade_no="mtls-2"
                )
            )
            return result.out_refund_no

    assert asyncio.run(flow()) == "mtls-2-r"


def test_simulator_command_tls_flags_and_trust_banner(https: tuple[Simulator, str, Path]) -> None:
    _, _, ca = https
    args = build_parser().parse_args(
        ["simulator", "--tls", "--signature-clock", "test", "--refund-outcome", "abnormal"]
    )
    assert args.tls is True
    assert args.signature_clock == "test"
    assert args.refund_outcome == "abnormal"
    text = trust_banner(ca)
    assert f"export REQUESTS_CA_BUNDLE={ca.resolve()}" in text
    assert "No required SSL certificate was sent" in text
    # the CA is a real CA certificate; the key behind it never leaves DIR/simulator/
    cert = x509.load_pem_x509_certificate(ca.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert (ca.parent / "simulator" / "ca_key.pem").stat().st_mode & 0o077 == 0
