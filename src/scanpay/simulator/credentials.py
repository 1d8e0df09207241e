"""The test merchant's credentials and the simulator's own keys, made once and then kept.

``DIR/merchant.json`` is the contract for users (issue 4): ``mchid``, ``appid``,
``api_v2_key``, ``api_v3_key``, ``merchant_serial_no``, ``merchant_private_key``,
``merchant_certificate``, ``platform_serial_no``, ``platform_certificate``,
``wechatpay_public_key_id`` and ``wechatpay_public_key``; the PEM entries are file names
relative to ``DIR``. The private halves that only WeChat would hold (platform key, WeChat Pay
public-key pair) live in ``DIR/simulator/`` and are never printed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scanpay.errors import ConfigurationError
from scanpay.simulator import ids
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import V2Merchant

MERCHANT_FILE: Final = "merchant.json"
FILES: Final = {
    "merchant_private_key": "apiclient_key.pem",
    "merchant_certificate": "apiclient_cert.pem",
    "platform_certificate": "wechatpay_platform_cert.pem",
    "wechatpay_public_key": "wechatpay_public_key.pem",
}
PRIVATE_DIR: Final = "simulator"
PLATFORM_KEY_FILE: Final = "platform_private_key.pem"
PUBLIC_KEY_PAIR_FILE: Final = "wechatpay_private_key.pem"


@dataclass(frozen=True)
class MerchantCredentials:
    """What a merchant holds for the simulated WeChat Pay account (secrets masked in repr)."""

    mchid: str
    appid: str
    api_v2_key: Secret
    api_v3_key: Secret
    merchant_serial_no: str
    merchant_private_key_pem: Secret
    merchant_certificate_pem: str
    platform_serial_no: str
    platform_certificate_pem: str
    wechatpay_public_key_id: str
    wechatpay_public_key_pem: str
    state_dir: Path | None = None

    def v2_merchant(self, sign_type: SignType = SignType.MD5) -> V2Merchant:
        return V2Merchant(
            appid=self.appid, mch_id=self.mchid, key=self.api_v2_key, sign_type=sign_type
        )

    def path(self, name: str) -> Path:
        """Where the PEM file named by a ``merchant.json`` key lives (state_dir only)."""
        if self.state_dir is None:
            raise ConfigurationError("in-memory simulator: credentials are not on disk")
        return self.state_dir / FILES[name]


@dataclass(frozen=True)
class SimulatorKeys:
    """The WeChat side's private keys: platform certificate key and public-key-mode key."""

    platform_private_key_pem: Secret
    wechatpay_private_key_pem: Secret


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _certificate(key: rsa.RSAPrivateKey, common_name: str, now: datetime) -> tuple[str, str]:
    """A self-signed certificate; returns (PEM, serial as 40 upper-case hex characters)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scanpay WeChat Pay simulator"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        ]
    )
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=5 * 365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), f"{serial:040X}"


def _new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def generate(now: datetime | None = None) -> tuple[MerchantCredentials, SimulatorKeys]:
    """Fresh credentials for a new simulated merchant."""
    moment = now or datetime.now(UTC)
    mchid = ids.mchid()
    merchant_key, platform_key, public_key = _new_rsa(), _new_rsa(), _new_rsa()
    merchant_cert, merchant_serial = _certificate(merchant_key, mchid, moment)
    platform_cert, platform_serial = _certificate(platform_key, "Tenpay.com Root CA sim", moment)
    public_pem = (
        public_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    creds = MerchantCredentials(
        mchid=mchid,
        appid=ids.appid(),
        api_v2_key=Secret(ids.api_key()),
        api_v3_key=Secret(ids.api_key()),
        merchant_serial_no=merchant_serial,
        merchant_private_key_pem=Secret(_key_pem(merchant_key)),
        merchant_certificate_pem=merchant_cert,
        platform_serial_no=platform_serial,
        platform_certificate_pem=platform_cert,
        wechatpay_public_key_id=ids.public_key_id(),
        wechatpay_public_key_pem=public_pem,
    )
    keys = SimulatorKeys(
        platform_private_key_pem=Secret(_key_pem(platform_key)),
        wechatpay_private_key_pem=Secret(_key_pem(public_key)),
    )
    return creds, keys


def write_file(path: Path, text: str, *, private: bool) -> None:
    """Write ``text`` atomically (temporary file, then rename); 0600 when ``private``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


def save(state_dir: Path, creds: MerchantCredentials, keys: SimulatorKeys) -> None:
    pems = {
        "merchant_private_key": creds.merchant_private_key_pem.reveal(),
        "merchant_certificate": creds.merchant_certificate_pem,
        "platform_certificate": creds.platform_certificate_pem,
        "wechatpay_public_key": creds.wechatpay_public_key_pem,
    }
    for name, text in pems.items():
        write_file(state_dir / FILES[name], text, private=name == "merchant_private_key")
    private = state_dir / PRIVATE_DIR
    write_file(private / PLATFORM_KEY_FILE, keys.platform_private_key_pem.reveal(), private=True)
    write_file(
        private / PUBLIC_KEY_PAIR_FILE, keys.wechatpay_private_key_pem.reveal(), private=True
    )
    document = {
        "mchid": creds.mchid,
        "appid": creds.appid,
        "api_v2_key": creds.api_v2_key.reveal(),
        "api_v3_key": creds.api_v3_key.reveal(),
        "merchant_serial_no": creds.merchant_serial_no,
        "merchant_private_key": FILES["merchant_private_key"],
        "merchant_certificate": FILES["merchant_certificate"],
        "platform_serial_no": creds.platform_serial_no,
        "platform_certificate": FILES["platform_certificate"],
        "wechatpay_public_key_id": creds.wechatpay_public_key_id,
        "wechatpay_public_key": FILES["wechatpay_public_key"],
    }
    # merchant.json is written last: its presence means the set is complete.
    write_file(state_dir / MERCHANT_FILE, json.dumps(document, indent=2) + "\n", private=True)


def load(state_dir: Path) -> tuple[MerchantCredentials, SimulatorKeys]:
    try:
        document = json.loads((state_dir / MERCHANT_FILE).read_text(encoding="utf-8"))

        def pem(name: str) -> str:
            return (state_dir / str(document[name])).read_text(encoding="ascii")

        private = state_dir / PRIVATE_DIR
        creds = MerchantCredentials(
            mchid=str(document["mchid"]),
            appid=str(document["appid"]),
            api_v2_key=Secret(str(document["api_v2_key"])),
            api_v3_key=Secret(str(document["api_v3_key"])),
            merchant_serial_no=str(document["merchant_serial_no"]),
            merchant_private_key_pem=Secret(pem("merchant_private_key")),
            merchant_certificate_pem=pem("merchant_certificate"),
            platform_serial_no=str(document["platform_serial_no"]),
            platform_certificate_pem=pem("platform_certificate"),
            wechatpay_public_key_id=str(document["wechatpay_public_key_id"]),
            wechatpay_public_key_pem=pem("wechatpay_public_key"),
            state_dir=state_dir,
        )
        keys = SimulatorKeys(
            platform_private_key_pem=Secret((private / PLATFORM_KEY_FILE).read_text("ascii")),
            wechatpay_private_key_pem=Secret((private / PUBLIC_KEY_PAIR_FILE).read_text("ascii")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"simulator credentials in {state_dir} are unreadable ({type(exc).__name__})"
        ) from None
    return creds, keys


def load_or_create(state_dir: Path | None) -> tuple[MerchantCredentials, SimulatorKeys]:
    """Load ``DIR/merchant.json`` (and its PEM files), or create and save a fresh set."""
    if state_dir is None:
        return generate()
    if (state_dir / MERCHANT_FILE).exists():
        return load(state_dir)
    creds, keys = generate()
    save(state_dir, creds, keys)
    return load(state_dir)
