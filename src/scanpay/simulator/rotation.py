"""The simulator's platform certificates: the one that signs now, and those still listed.

WeChat rotates platform certificates: a new certificate appears in ``/v3/certificates``,
answers and notifications start to be signed by it, and the old one stays listed for a while
so merchants can still check what it signed. :class:`KeyRing` holds that list (oldest first;
the last one signs). :meth:`KeyRing.rotate` makes a fresh RSA key and self-signed certificate
(valid from a day ago in real time, because SDKs check validity against the real clock) and
makes it current; :meth:`KeyRing.retire_old` drops every certificate but the current one.
With a state directory the ring is kept in ``DIR/simulator/platform_ring.json`` (private keys
included, mode 0600) after every change, so a restarted simulator signs with the certificate
it signed with before; ``merchant.json`` keeps naming the first platform certificate.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scanpay.errors import ConfigurationError
from scanpay.simulator.credentials import (
    PRIVATE_DIR,
    MerchantCredentials,
    SimulatorKeys,
    write_file,
)
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


RING_FILE = "platform_ring.json"


def _entry_json(entry: PlatformCertificate) -> dict[str, str]:
    return {
        "serial": entry.serial,
        "certificate": entry.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "private_key": entry.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
    }


def _entry_from_json(data: object) -> PlatformCertificate:
    if not isinstance(data, dict):
        raise TypeError("ring entry must be an object")
    cert = load_certificate(str(data["certificate"]))
    return PlatformCertificate(
        certificate_serial(cert), cert, load_private_key(str(data["private_key"]))
    )


class KeyRing:
    """Platform certificates in rotation order; thread-safe; kept in the state directory."""

    def __init__(self, creds: MerchantCredentials, keys: SimulatorKeys) -> None:
        self._file = (
            creds.state_dir / PRIVATE_DIR / RING_FILE if creds.state_dir is not None else None
        )
        self._lock = threading.Lock()
        if self._file is not None and self._file.exists():
            self._certs = self._load(self._file)
            return
        first = load_certificate(creds.platform_certificate_pem)
        self._certs = [
            PlatformCertificate(
                certificate_serial(first),
                first,
                load_private_key(keys.platform_private_key_pem.reveal()),
            )
        ]

    @staticmethod
    def _load(path: Path) -> list[PlatformCertificate]:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            ring = [_entry_from_json(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
            raise ConfigurationError(
                f"platform certificate ring {path} is unreadable ({type(exc).__name__})"
            ) from None
        if not ring:
            raise ConfigurationError(f"platform certificate ring {path} is empty")
        return ring

    def _save(self) -> None:
        """Write the ring (call with the lock held)."""
        if self._file is not None:
            text = json.dumps([_entry_json(entry) for entry in self._certs], indent=1)
            write_file(self._file, text + "\n", private=True)

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
            self._save()
        return fresh.serial

    def retire_old(self) -> list[str]:
        """Stop listing every certificate but the current one; the serials dropped."""
        with self._lock:
            dropped = [entry.serial for entry in self._certs[:-1]]
            self._certs = self._certs[-1:]
            self._save()
        return dropped
