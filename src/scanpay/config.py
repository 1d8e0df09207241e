"""Settings of the merchant service: environment variables ``SCANPAY_*`` and/or an env file.

Keys are :class:`pydantic.SecretStr` (never shown in reprs or logs). Nothing reads the
environment at import time: build ``Settings()`` where the process starts (``scanpay serve``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scanpay.domain.events import ShopEventType
from scanpay.webhooks.safety import UnsafeUrlError, parse_url
from scanpay.webhooks.schedule import parse_schedule
from scanpay.webhooks.signing import secret_key

DEFAULT_WECHAT_BASE_URL: Final = "https://api.mch.weixin.qq.com"


class Settings(BaseSettings):
    """Everything ``create_app`` needs. Unknown ``SCANPAY_*`` variables are ignored."""

    model_config = SettingsConfigDict(env_prefix="SCANPAY_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///var/scanpay.sqlite3"
    public_base_url: str = "http://127.0.0.1:8080"
    shop_api_key: SecretStr = Field(min_length=16)
    wechat_base_url: str = DEFAULT_WECHAT_BASE_URL
    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    api_v2_key: SecretStr | None = Field(default=None, min_length=1)  # required for v2
    sign_type: Literal["MD5", "HMAC-SHA256"] = "HMAC-SHA256"
    simulator_phone_url: str | None = None
    notify_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    wechat_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    checkout_poll_ms: int = Field(default=2000, ge=200)
    demo_product_name: str = "Green tea, 250 g"
    demo_product_amount: int = Field(default=1, ge=1, lt=2**31)
    migrate_on_startup: bool = True
    # API v3 (docs/configuration.md): which API new attempts use, and the v3 key material.
    api_version: Literal["v2", "v3"] = "v2"
    api_v3_key: SecretStr | None = Field(default=None, min_length=32, max_length=32)
    merchant_key_file: Path | None = None  # apiclient_key.pem (v3 signing; v2 refund mTLS)
    merchant_private_key: SecretStr | None = None  # the same PEM given inline (env)
    merchant_cert_file: Path | None = None  # apiclient_cert.pem; the serial is read from it
    merchant_serial_no: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{1,40}$")
    wechatpay_public_key_id: str | None = Field(default=None, pattern=r"^PUB_KEY_ID_\w{1,64}$")
    wechatpay_public_key_file: Path | None = None
    platform_cert_files: str | None = None  # comma-separated PEM files (certificate mode)
    # lifecycle (docs/operations.md): payment window, order deadline, active queries
    # WeChat refuses a time_expire less than 5 minutes ahead *when the call arrives*; a window
    # of at least 6 minutes leaves a minute for the call's own latency and retries.
    payment_window_seconds: int = Field(default=15 * 60, ge=6 * 60, le=2 * 60 * 60)
    order_deadline_seconds: int = Field(default=2 * 60 * 60, ge=6 * 60, le=7 * 24 * 60 * 60)
    query_first_delay_seconds: float = Field(default=10.0, gt=0)
    query_max_delay_seconds: float = Field(default=300.0, gt=0)
    checkout_query_quiet_seconds: float = Field(default=5.0, ge=0)
    reconciler_enabled: bool = True
    reconciler_poll_seconds: float = Field(default=1.0, gt=0)
    reconciler_lease_seconds: float = Field(default=60.0, gt=0)
    reconciler_batch: int = Field(default=50, ge=1, le=1000)
    # webhooks (issue 11, docs/webhooks.md): the endpoint from settings, the retry schedule,
    # and whether endpoints may be private addresses (the demo and tests only)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None  # whsec_ + base64 of 24-64 random bytes
    webhook_events: str | None = None  # comma-separated types (order.paid,...); unset: all
    webhook_retry_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_allow_private: bool = False
    webhooks_enabled: bool = True  # the delivery worker runs in this process
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # a delivery leased by a process that died is tried again after this (keep it above the
    # 15 s HTTP timeout so two instances never send the same attempt at once)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)

    @field_validator("public_base_url", "wechat_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_material(self) -> Settings:
        if self.api_version == "v2" and self.api_v2_key is None:
            raise ValueError("api_version v2 needs api_v2_key")
        if self.api_version == "v3":
            if self.api_v3_key is None:
                raise ValueError("api_version v3 needs api_v3_key (32 characters)")
            if self.merchant_key_file is None and self.merchant_private_key is None:
                raise ValueError("api_version v3 needs merchant_key_file or merchant_private_key")
            if self.merchant_cert_file is None and self.merchant_serial_no is None:
                raise ValueError("api_version v3 needs merchant_cert_file or merchant_serial_no")
        if (self.wechatpay_public_key_id is None) != (self.wechatpay_public_key_file is None):
            raise ValueError("wechatpay_public_key_id and wechatpay_public_key_file go together")
        return self

    @property
    def platform_cert_paths(self) -> tuple[Path, ...]:
        if not self.platform_cert_files:
            return ()
        return tuple(Path(p.strip()) for p in self.platform_cert_files.split(",") if p.strip())

    @property
    def notify_url_v2(self) -> str:
        return f"{self.public_base_url}/notify/v2"

    @property
    def refund_notify_url_v2(self) -> str:
        return f"{self.public_base_url}/notify/v2/refund"

    @property
    def notify_url_v3(self) -> str:
        return f"{self.public_base_url}/notify/v3"

    @property
    def refund_notify_url_v3(self) -> str:
        return f"{self.public_base_url}/notify/v3/refund"

    # ---- webhooks (issue 11) -------------------------------------------------------------

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _webhook_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("webhook_events")
    @classmethod
    def _webhook_events(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = {part.strip() for part in value.split(",") if part.strip()}
        unknown = sorted(names - {t.value for t in ShopEventType})
        if unknown or not names:
            known = ", ".join(t.value for t in ShopEventType)
            raise ValueError(f"unknown webhook event type(s) {unknown}; known: {known}")
        return ",".join(sorted(names))

    @model_validator(mode="after")
    def _webhook_endpoint(self) -> Settings:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret go together")
        if self.webhook_url is not None and self.webhook_secret is not None:
            try:
                parse_url(self.webhook_url)
            except UnsafeUrlError as exc:
                raise ValueError(f"webhook_url: {exc.message}") from None
            secret_key(self.webhook_secret.get_secret_value())  # ValueError names no part of it
        return self

    @property
    def webhook_event_types(self) -> tuple[str, ...] | None:
        return tuple(self.webhook_events.split(",")) if self.webhook_events else None
