"""The simulator's platform certificates: the one that signs now, and those still listed.

WeChat rotates platform certificates: a new certificate appears in ``/v3/certificates``,
answers and notifications start to be signed by it, and the old one stays listed for a while
so merchants can still check what it signed. :class:`KeyRing` holds that list (oldest first;
the last one signs). :meth:`KeyRing.rotate` makes a fresh RSA key and self-signed certificate
(valid from a day ago in real time, because SDKs check validity against the real clock) and
makes it current; :meth:`KeyRing.retire_old` drops every certificate but the current one.
Rotations live in memory: a restarted simulator starts again from ``merchant.json``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.keys import certificate_serial, load_certificate, load_private_key


@dataclass(frozen=True)
class PlatformCertificate:
    serial: str
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    def __repr__(self) -> str:
        return f"PlatformCertificate(serial={self.serial!r})"


def new_platform_certificate(now: datetime | None = None) -> PlatformCertificate:
    """A fresh platform key and a self-signed certificate for it (serial: 40 hex digits)."""
    moment = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA sim (rotated)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scanpay WeChat Pay simulator"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(days=1))
        .not_valid_after(moment + timedelta(days=5 * 365))
        .sign(key, hashes.SHA256())
    )
    return PlatformCertificate(certificate_serial(cert), cert, key)


class KeyRing:
    """Platform certificates in rotation order; thread-safe."""

    def __init__(self, creds: MerchantCredentials, keys: SimulatorKeys) -> None:
        first = load_certificate(creds.platform_certificate_pem)
        self._certs = [
            PlatformCertificate(
                certificate_serial(first),
                first,
                load_private_key(keys.platform_private_key_pem.reveal()),
            )
        ]
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyRing(serials={self.serials()!r})"

    def current(self) -> PlatformCertificate:
        """The certificate whose key signs answers and notifications now."""
        with self._lock:
            return self._certs[-1]

    def listed(self) -> list[x509.Certificate]:
        """What ``/v3/certificates`` lists (oldest first)."""
        with self._lock:
            return [entry.certificate for entry in self._certs]

    def serials(self) -> list[str]:
        with self._lock:
            return [entry.serial for entry in self._certs]

    def rotate(self, *, keep_old: bool = True) -> str:
        """Make a new certificate current; the old ones stay listed unless ``keep_old`` is
        false. Returns the new serial."""
        fresh = new_platform_certificate()
        with self._lock:
            self._certs = [*self._certs, fresh] if keep_old else [fresh]
        return fresh.serial

    def retire_old(self) -> list[str]:
        """Stop listing every certificate but the current one; the serials dropped."""
        with self._lock:
            dropped = [entry.serial for entry in self._certs[:-1]]
            self._certs = self._certs[-1:]
        return dropped
