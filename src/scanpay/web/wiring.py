"""How the service talks to WeChat Pay, built from :class:`~scanpay.config.Settings`.

:func:`build_wechat` makes the v2 client (when an API v2 key is set) and the v3 client (when
the API v3 key and the merchant key are set), and the gateway of the configured
``api_version``, which new attempts and refunds use. Both clients may exist at once so that
notifications for older attempts still verify after a switch. Key material is read from files
(or, for the merchant key, inline settings) here, once; it is never logged.

:class:`Extras` is what the refund and v3 routes need beyond ``AppContext`` (kept on
``app.state.extras``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import Request

from scanpay.client.v2 import ClientCertificate, V2Client
from scanpay.client.v3 import V3Client
from scanpay.config import Settings
from scanpay.domain.refunds import RefundService
from scanpay.errors import ConfigurationError
from scanpay.store.refunds import SqlRefundStore
from scanpay.web.gateway import V2Gateway, V3Gateway
from scanpay.wechat.keys import (
    TrustStore,
    certificate_serial,
    load_certificate,
    load_private_key,
    load_public_key,
)
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import V2Merchant


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise ConfigurationError(f"cannot read the {what} file") from None


def _merchant_key_pem(settings: Settings) -> bytes | None:
    if settings.merchant_private_key is not None:
        return settings.merchant_private_key.get_secret_value().encode()
    if settings.merchant_key_file is not None:
        return _read(settings.merchant_key_file, "merchant private key")
    return None


def merchant_serial(settings: Settings) -> str:
    if settings.merchant_cert_file is not None:
        cert = load_certificate(_read(settings.merchant_cert_file, "merchant certificate"))
        return certificate_serial(cert)
    if settings.merchant_serial_no is None:
        raise ConfigurationError("merchant_cert_file or merchant_serial_no is required for v3")
    return settings.merchant_serial_no.upper()


def trust_store(settings: Settings) -> TrustStore:
    """Public-key mode when a WeChat Pay public key is given; certificates (pre-loaded from
    ``platform_cert_files`` and downloaded on demand) otherwise; both during a migration."""
    trust = TrustStore()
    if settings.wechatpay_public_key_id and settings.wechatpay_public_key_file:
        key = load_public_key(_read(settings.wechatpay_public_key_file, "WeChat Pay public key"))
        trust.add_public_key(settings.wechatpay_public_key_id, key)
    if settings.wechatpay_new_public_key_id and settings.wechatpay_new_public_key_file:
        # during a public key change both are trusted; the new one is named (issue 15)
        new = load_public_key(_read(settings.wechatpay_new_public_key_file, "new public key"))
        trust.add_public_key(settings.wechatpay_new_public_key_id, new)
    for path in settings.platform_cert_paths:
        trust.add_certificate(load_certificate(_read(path, "platform certificate")))
    return trust


def v2_merchant(settings: Settings) -> V2Merchant | None:
    if settings.api_v2_key is None:
        return None
    return V2Merchant(
        appid=settings.appid,
        mch_id=settings.mchid,
        key=Secret(settings.api_v2_key.get_secret_value()),
        sign_type=SignType(settings.sign_type),
    )


@dataclass(frozen=True)
class WeChatClients:
    gateway: V2Gateway | V3Gateway
    v2: V2Client | None
    v3: V3Client | None
    merchant_v2: V2Merchant | None

    async def aclose(self) -> None:
        if self.v2 is not None:
            await self.v2.aclose()
        if self.v3 is not None:
            await self.v3.aclose()


def build_wechat(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> WeChatClients:
    key_pem = _merchant_key_pem(settings)
    merchant = v2_merchant(settings)
    v2 = None
    if merchant is not None:
        cert = None
        if key_pem is not None and settings.merchant_cert_file is not None:
            cert_pem = _read(settings.merchant_cert_file, "merchant certificate")
            cert = ClientCertificate(cert_pem, key_pem)
        v2 = V2Client(
            merchant,
            base_url=settings.wechat_base_url,
            transport=transport,
            timeout=settings.wechat_timeout_seconds,
            client_cert=cert,
        )
    v3 = None
    if settings.api_v3_key is not None and key_pem is not None:
        v3 = V3Client(
            settings.mchid,
            merchant_serial(settings),
            load_private_key(key_pem),
            Secret(settings.api_v3_key.get_secret_value()),
            trust_store(settings),
            base_url=settings.wechat_base_url,
            transport=transport,
            timeout=settings.wechat_timeout_seconds,
        )
    gateway: V2Gateway | V3Gateway
    if settings.api_version == "v3":
        if v3 is None:
            raise ConfigurationError("api_version v3 needs api_v3_key and the merchant key")
        gateway = V3Gateway(
            v3,
            appid=settings.appid,
            notify_url=settings.notify_url_v3,
            refund_notify_url=settings.refund_notify_url_v3,
        )
    else:
        if v2 is None:
            raise ConfigurationError("api_version v2 needs api_v2_key")
        gateway = V2Gateway(
            v2, notify_url=settings.notify_url_v2, refund_notify_url=settings.refund_notify_url_v2
        )
    return WeChatClients(gateway=gateway, v2=v2, v3=v3, merchant_v2=merchant)


@dataclass(frozen=True)
class Extras:
    refunds: RefundService
    store: SqlRefundStore
    wechat: WeChatClients


def get_extras(request: Request) -> Extras:
    extras: Extras = request.app.state.extras
    return extras
