"""HTTPS with the simulator's own CA, and mutual TLS on ``/secapi/`` paths as WeChat does.

``scanpay simulator --tls`` serves HTTPS. The server certificate is issued by a CA the
simulator makes once and keeps: ``DIR/simulator_ca.pem`` is what clients trust (the banner
prints how: ``REQUESTS_CA_BUNDLE`` for wechatpy/requests, ``SSL_CERT_FILE``,
``NODE_EXTRA_CA_CERTS``, ``server_ca_pem`` for scanpay's V2Client); its key stays in
``DIR/simulator/``. The server certificate (``DIR/simulator/server_*.pem``) is reissued at
every start for the host names and addresses given.

Client certificates are asked for in every handshake but not required there (one listener
serves every path); the TLS layer only accepts the merchant's API certificate
(``DIR/apiclient_cert.pem``). :class:`ClientCertProtocol` hands the presented certificate to
the app (the ASGI ``tls`` extension, ``client_cert_chain``), and :func:`secapi_refusal`
answers a ``/secapi/`` request without it as WeChat's front does: HTTP 400, "No required
SSL certificate was sent". So wechatpy with its usual ``mch_cert``/``mch_key`` works
unchanged, and a caller without them is refused.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from scanpay.errors import ConfigurationError
from scanpay.simulator.credentials import FILES, PRIVATE_DIR, MerchantCredentials, write_file
from scanpay.wechat.keys import load_certificate, load_private_key

CA_FILE: Final = "simulator_ca.pem"
CA_KEY_FILE: Final = "ca_key.pem"
SERVER_CERT_FILE: Final = "server_cert.pem"
SERVER_KEY_FILE: Final = "server_key.pem"
NO_CERTIFICATE: Final = b"No required SSL certificate was sent"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TlsFiles:
    ca_certificate: Path  # what clients trust
    server_certificate: Path
    server_key: Path
    client_ca: Path  # the merchant's API certificate: the only client certificate accepted

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "ssl_certfile": str(self.server_certificate),
            "ssl_keyfile": str(self.server_key),
            "ssl_ca_certs": str(self.client_ca),
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
            "http": ClientCertProtocol,
        }


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scanpay WeChat Pay simulator"),
        ]
    )


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _new_ca(now: datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name("scanpay simulator CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=10 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server_certificate(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, hosts: list[str], now: datetime
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else "localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def prepare(creds: MerchantCredentials, hosts: list[str]) -> TlsFiles:
    """The CA (made once, kept) and a fresh server certificate for ``hosts``."""
    if creds.state_dir is None:
        raise ConfigurationError("HTTPS needs a state directory (for the CA and certificates)")
    state, private = creds.state_dir, creds.state_dir / PRIVATE_DIR
    now = datetime.now(UTC)
    ca_path, ca_key_path = state / CA_FILE, private / CA_KEY_FILE
    try:
        if ca_path.exists() and ca_key_path.exists():
            ca = load_certificate(ca_path.read_text("ascii"))
            ca_key = load_private_key(ca_key_path.read_text("ascii"))
        else:
            ca, ca_key = _new_ca(now)
            write_file(ca_key_path, _pem(ca_key), private=True)
            pem = ca.public_bytes(serialization.Encoding.PEM).decode("ascii")
            write_file(ca_path, pem, private=False)
    except (OSError, ValueError, ConfigurationError) as exc:
        raise ConfigurationError(f"the simulator CA in {state} is unreadable: {exc}") from None
    cert, key = _server_certificate(ca, ca_key, hosts, now)
    cert_path, key_path = private / SERVER_CERT_FILE, private / SERVER_KEY_FILE
    write_file(key_path, _pem(key), private=True)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), private=False)
    return TlsFiles(ca_path, cert_path, key_path, state / FILES["merchant_certificate"])


class ClientCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, telling the app which client certificate the connection
    presented (ASGI ``tls`` extension: ``client_cert_chain``, PEM; empty when none)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
        inner: ASGIApp = self.app

        async def with_tls(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                extensions = scope.setdefault("extensions", {})
                extensions["tls"] = {"client_cert_chain": chain, "server_cert": None}
            await inner(scope, receive, send)

        self.app = with_tls


def presented_certificate(scope: Scope) -> x509.Certificate | None:
    """The client certificate the TLS layer accepted for this request, if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        return x509.load_pem_x509_certificate(str(chain[0]).encode("ascii"))
    except ValueError:
        return None


def secapi_refusal(scope: Scope, merchant_certificate: x509.Certificate) -> bytes | None:
    """For a ``/secapi/`` request: None when the merchant's certificate was presented, else
    the body of WeChat's refusal."""
    presented = presented_certificate(scope)
    if presented is not None and presented == merchant_certificate:
        return None
    return NO_CERTIFICATE
