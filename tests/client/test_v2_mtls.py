"""Refund over real mutual TLS on loopback: the client presents its certificate (PEM or PKCS#12).

The server here stands for WeChat's TLS front only: it refuses a handshake without a client
certificate signed by the test CA and answers the refund with the v2 core. Keys and
certificates are generated at run time.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from scanpay.client.v2 import ClientCertificate, V2Client
from scanpay.errors import ConfigurationError, TransportError
from scanpay.wechat.secret import Secret
from scanpay.wechat.v2.envelope import V2Merchant, decode_request, encode_response
from scanpay.wechat.v2.refunds import RefundRequest, RefundResult

KEY = Secret("0123456789abcdef0123456789abcdef")
MERCHANT = V2Merchant(appid="wx8888888888888888", mch_id="1900000109", key=KEY)
NOW = datetime.now(UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    ip: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@dataclass
class Pki:
    ca_pem: str
    server_cert: bytes
    server_key: bytes
    client_cert: x509.Certificate
    client_key: ec.EllipticCurvePrivateKey

    @property
    def client_pem(self) -> ClientCertificate:
        return ClientCertificate(
            self.client_cert.public_bytes(Encoding.PEM), _pem_key(self.client_key)
        )


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test CA", ca_key, "Test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    return Pki(
        ca_pem=ca.public_bytes(Encoding.PEM).decode(),
        server_cert=_cert("127.0.0.1", server_key, "Test CA", ca_key, ip=True).public_bytes(
            Encoding.PEM
        ),
        server_key=_pem_key(server_key),
        client_cert=_cert("1900000109", client_key, "Test CA", ca_key),
        client_key=client_key,
    )


class TlsFront:
    """Minimal HTTPS/1.1 server requiring a client certificate; answers refunds."""

    def __init__(self, pki: Pki, tmp: Path) -> None:
        (tmp / "s.pem").write_bytes(pki.server_cert)
        (tmp / "s.key").write_bytes(pki.server_key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca_pem)
        context.load_cert_chain(tmp / "s.pem", tmp / "s.key")
        context.verify_mode = ssl.CERT_REQUIRED
        self.context = context
        self.peers: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
            writer.close()
            return
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        fields, sign_type = decode_request(await reader.readexactly(length), KEY)
        peer = writer.get_extra_info("peercert")
        self.peers.append(dict(x[0] for x in peer["subject"])["commonName"])
        request = RefundRequest.from_fields(fields)
        result = RefundResult(
            transaction_id="4200002024030512345678901234",
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            refund_id="50300408942024030507145868882",
            refund_fee=request.refund_fee,
            total_fee=request.total_fee,
            cash_fee=request.total_fee,
        )
        body = encode_response(
            {"appid": MERCHANT.appid, "mch_id": MERCHANT.mch_id, **result.to_fields()},
            KEY,
            sign_type,
            nonce="tls",
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def front(pki: Pki, tmp_path: Path) -> AsyncIterator[TlsFront]:
    server = TlsFront(pki, tmp_path)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server.context)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server
        listener.close()
        await listener.wait_closed()


REFUND = RefundRequest(
    out_trade_no="SP20240305a1", out_refund_no="RF20240305a1", total_fee=1250, refund_fee=250
)


def _client(front: TlsFront, pki: Pki, cert: ClientCertificate | None) -> V2Client:
    return V2Client(
        MERCHANT,
        base_url=f"https://127.0.0.1:{front.port}",
        client_cert=cert,
        server_ca_pem=pki.ca_pem,
        timeout=5.0,
    )


async def test_refund_with_pem_files(front: TlsFront, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "apiclient_cert.pem").write_bytes(pki.client_pem.cert_pem)
    (tmp_path / "apiclient_key.pem").write_bytes(pki.client_pem.key_pem)
    cert = ClientCertificate.from_pem_files(
        tmp_path / "apiclient_cert.pem", tmp_path / "apiclient_key.pem"
    )
    async with _client(front, pki, cert) as v2:
        result = await v2.refund(REFUND)
    assert result.refund_fee == 250
    assert front.peers == ["1900000109"]


async def test_refund_with_pkcs12(front: TlsFront, pki: Pki) -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        b"Tenpay Certificate",
        pki.client_key,
        pki.client_cert,
        None,
        BestAvailableEncryption(b"1900000109"),
    )
    cert = ClientCertificate.from_pkcs12(p12, Secret("1900000109"))
    assert "BEGIN" not in repr(cert)
    async with _client(front, pki, cert) as v2:
        result = await v2.refund(REFUND)
    assert result.out_refund_no == "RF20240305a1"
    assert front.peers == ["1900000109"]


async def test_server_refuses_a_client_without_certificate(front: TlsFront, pki: Pki) -> None:
    async with _client(front, pki, None) as v2:
        with pytest.raises(ConfigurationError):
            await v2.refund(REFUND)  # refused before sending
        with pytest.raises(TransportError):  # a plain call to the mTLS front: handshake fails
            await v2.call("/secapi/pay/refund", REFUND.to_fields())


def test_bad_certificate_material(pki: Pki, tmp_path: Path) -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        b"x", pki.client_key, pki.client_cert, None, BestAvailableEncryption(b"right")
    )
    with pytest.raises(ConfigurationError):
        ClientCertificate.from_pkcs12(p12, "wrong")
    with pytest.raises(ConfigurationError):
        ClientCertificate.from_pkcs12(b"not a p12", "x")
    other_key = _pem_key(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigurationError):
        ClientCertificate(pki.client_pem.cert_pem, other_key).ssl_context()
    with pytest.raises(ConfigurationError):
        ClientCertificate.from_pem_files(tmp_path / "missing.pem", tmp_path / "missing.key")
