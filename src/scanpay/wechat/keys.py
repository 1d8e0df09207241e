"""Key material for API v3: merchant keys, platform certificates, WeChat Pay public keys.

Loading is pure (bytes in, key objects out). :class:`TrustStore` holds every key scanpay
accepts a WeChat Pay signature from, addressed the way ``Wechatpay-Serial`` addresses them:
a WeChat Pay public key by its id (``PUB_KEY_ID_`` + digits), a platform certificate by its
serial number written as 40 upper-case hex digits. Both kinds may be trusted at once, which is
what a merchant migrating from certificates to the public key needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import pkcs12

from scanpay.errors import ConfigurationError, UnknownKeyError

PUBLIC_KEY_PREFIX: Final = "PUB_KEY_ID_"
_SERIAL: Final = re.compile(r"[0-9A-Fa-f]{1,64}")
_PUBLIC_KEY_ID: Final = re.compile(r"PUB_KEY_ID_[0-9A-Za-z_]{1,64}")


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("ascii", "replace") if isinstance(data, str) else data


def _armour(data: bytes, label: bytes) -> bytes:
    """Accept a bare base64 body (as WeChat's download page shows it) as well as PEM."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        return text
    return b"-----BEGIN " + label + b"-----\n" + text + b"\n-----END " + label + b"-----\n"


def load_private_key(pem: bytes | str, password: bytes | None = None) -> RSAPrivateKey:
    """Load the merchant API private key (``apiclient_key.pem``); must be RSA."""
    try:
        key = serialization.load_pem_private_key(
            _armour(_as_bytes(pem), b"PRIVATE KEY"), password=password
        )
    except (ValueError, TypeError):
        raise ConfigurationError("merchant private key is not a readable PEM key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigurationError("merchant private key must be RSA")
    return key


def load_public_key(pem: bytes | str) -> RSAPublicKey:
    """Load a WeChat Pay public key (``pub_key.pem``); must be RSA."""
    try:
        key = serialization.load_pem_public_key(_armour(_as_bytes(pem), b"PUBLIC KEY"))
    except (ValueError, TypeError):
        raise ConfigurationError("public key is not a readable PEM key") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("public key must be RSA")
    return key


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """Load an X.509 certificate (merchant ``apiclient_cert.pem`` or a platform certificate)."""
    try:
        return x509.load_pem_x509_certificate(_as_bytes(pem).strip())
    except ValueError:
        raise ConfigurationError("certificate is not a readable PEM certificate") from None


def load_pkcs12(data: bytes, password: bytes | None) -> tuple[RSAPrivateKey, x509.Certificate]:
    """Split ``apiclient_cert.p12`` (its password is the merchant id) into key and cert."""
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise ConfigurationError("PKCS#12 file unreadable or wrong password") from None
    if not isinstance(key, RSAPrivateKey) or cert is None:
        raise ConfigurationError("PKCS#12 file must hold an RSA key and its certificate")
    return key, cert


def certificate_serial(cert: x509.Certificate) -> str:
    """The serial as WeChat writes it: upper-case hex, left-padded to 40 digits."""
    return format(cert.serial_number, "X").rjust(40, "0")


def certificate_public_key(cert: x509.Certificate) -> RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("certificate key must be RSA")
    return key


def normalise_serial(serial: str) -> str:
    """Canonical form of a ``Wechatpay-Serial`` value (hex serials upper-cased, padded)."""
    if serial.startswith(PUBLIC_KEY_PREFIX):
        return serial
    if _SERIAL.fullmatch(serial):
        return serial.upper().rjust(40, "0")
    return serial


def is_public_key_id(serial: str) -> bool:
    return serial.startswith(PUBLIC_KEY_PREFIX)


@dataclass(frozen=True)
class TrustedKey:
    """One key WeChat Pay may sign with, and how ``Wechatpay-Serial`` names it."""

    key_id: str
    public_key: RSAPublicKey = field(repr=False)
    not_after: datetime | None = None


class TrustStore:
    """WeChat Pay public keys by id and platform certificates by serial, looked up by serial.

    Not thread-safe for writers; the client replaces certificates only from one task.
    """

    def __init__(
        self,
        *,
        public_keys: Iterable[tuple[str, RSAPublicKey]] = (),
        certificates: Iterable[x509.Certificate] = (),
    ) -> None:
        self._keys: dict[str, TrustedKey] = {}
        self._public_key_ids: list[str] = []
        self._certificate_serials: list[str] = []
        for key_id, key in public_keys:
            self.add_public_key(key_id, key)
        for cert in certificates:
            self.add_certificate(cert)

    def add_public_key(self, key_id: str, key: RSAPublicKey) -> None:
        if not _PUBLIC_KEY_ID.fullmatch(key_id):
            raise ConfigurationError("a WeChat Pay public key id looks like PUB_KEY_ID_0112...")
        if key_id not in self._keys:
            self._public_key_ids.append(key_id)
        self._keys[key_id] = TrustedKey(key_id, key)

    def add_certificate(self, cert: x509.Certificate) -> str:
        """Trust a platform certificate; returns its serial."""
        serial = certificate_serial(cert)
        if serial not in self._keys:
            self._certificate_serials.append(serial)
        self._keys[serial] = TrustedKey(
            serial, certificate_public_key(cert), cert.not_valid_after_utc
        )
        return serial

    def copy(self) -> TrustStore:
        """An independent store trusting the same keys (to try new ones before adopting)."""
        twin = TrustStore()
        twin._keys = dict(self._keys)
        twin._public_key_ids = list(self._public_key_ids)
        twin._certificate_serials = list(self._certificate_serials)
        return twin

    def lookup(self, serial: str) -> RSAPublicKey:
        """The key named by ``serial``; :class:`UnknownKeyError` when it is not trusted."""
        entry = self._keys.get(serial)  # stored names are canonical: try as received first
        if entry is None:
            entry = self._keys.get(normalise_serial(serial))
        if entry is None:
            kind = "public key id" if is_public_key_id(serial) else "certificate serial"
            raise UnknownKeyError(f"untrusted WeChat Pay {kind}")
        return entry.public_key

    def __contains__(self, serial: object) -> bool:
        return isinstance(serial, str) and normalise_serial(serial) in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def public_key_ids(self) -> tuple[str, ...]:
        return tuple(self._public_key_ids)

    @property
    def certificate_serials(self) -> tuple[str, ...]:
        return tuple(self._certificate_serials)

    def preferred_serial(self) -> str | None:
        """What to send as ``Wechatpay-Serial``: the public key id if any, else the certificate
        that expires last; ``None`` when nothing is trusted yet."""
        if self._public_key_ids:
            return self._public_key_ids[-1]
        certs = [self._keys[s] for s in self._certificate_serials]
        if not certs:
            return None
        return max(certs, key=lambda k: k.not_after.timestamp() if k.not_after else 0.0).key_id

    def __repr__(self) -> str:
        return (
            f"TrustStore(public_keys={list(self._public_key_ids)!r}, "
            f"certificates={list(self._certificate_serials)!r})"
        )
