"""Settings of the merchant service: environment variables ``SCANPAY_*`` and/or an env file.

Keys are :class:`pydantic.SecretStr` (never shown in reprs or logs). Nothing reads the
environment at import time: build ``Settings()`` where the process starts (``scanpay serve``).
"""

from __future__ import annotations

import ipaddress
from datetime import time
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
    # hardening and observability (issue 9; docs/observability.md)
    notify_refused_body_bytes: int = Field(default=256, ge=0, le=65536)
    notify_refusals_per_minute: int = Field(default=60, ge=1, le=100_000)
    notify_allow_list: str = ""  # comma-separated addresses/networks never rate-limited
    retention_accepted_days: float = Field(default=90, gt=0)
    retention_refused_days: float = Field(default=7, gt=0)
    retention_events_days: float = Field(default=400, gt=0)
    retention_idempotency_days: float = Field(default=30, gt=0)
    retention_prune_seconds: float = Field(default=3600, ge=1)
    platform_cert_refresh_seconds: float = Field(default=4 * 3600, ge=60)
    log_format: Literal["text", "json"] = "text"
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    observe_requests: bool = True  # request ids, access lines, HTTP and WeChat call metrics
    # cashier pages (issue 10, docs/configuration.md): language, who is paid, return to shop
    default_locale: Literal["zh-CN", "en"] = "zh-CN"
    merchant_name: str = Field(default="scanpay", min_length=1, max_length=64)
    merchant_logo_url: str | None = Field(default=None, pattern=r"^(https?://|/)\S+$")
    checkout_return_seconds: int = Field(default=8, ge=1, le=10)
    # webhooks (issue 11, docs/webhooks.md): the endpoint from settings, the retry schedule,
    # and whether endpoints may be private addresses (the demo and tests only)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None  # whsec_ + base64 of 24-64 random bytes
    webhook_events: str | None = None  # comma-separated types (order.paid,...); unset: all
    webhook_retry_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_allow_private: bool = False
    webhooks_enabled: bool = True  # the delivery worker runs in this process
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # operator console (issue 12, docs/console.md)
    console_enabled: bool = True
    console_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    console_max_hours: int = Field(default=12, ge=1, le=7 * 24)
    console_sign_in_lock_after: int = Field(default=5, ge=2, le=100)
    console_sign_in_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)
    console_sign_in_delay_seconds: float = Field(default=0.5, ge=0, le=10)
    console_timezone: str = "Asia/Shanghai"
    # several instances on PostgreSQL (docs/deployment.md): connection pools, the LISTEN
    # connection for status streams, the safety-net poll, the instance's name, graceful drain
    database_pool_size: int = Field(default=5, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    database_prepared_statements: bool = True  # False behind PgBouncer transaction pooling
    database_listen_url: str | None = None  # a direct connection for LISTEN (not PgBouncer)
    stream_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    instance_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    # daily reconciliation against WeChat Pay's bill (docs/reconciliation.md)
    reconcile_enabled: bool = True
    reconcile_after: time = time(10, 0)  # Asia/Shanghai time of day the previous day is run
    reconcile_retry_seconds: float = Field(default=900.0, gt=0)
    reconcile_poll_seconds: float = Field(default=60.0, gt=0)
    reconcile_hold_days: int = Field(default=3, ge=0, le=30)
    # issue 15: a WeChat Pay public key change; the new key is trusted beside the old one
    # (and named in Wechatpay-Serial) until it replaces wechatpay_public_key_id/_file
    wechatpay_new_public_key_id: str | None = Field(default=None, pattern=r"^PUB_KEY_ID_\w{1,64}$")
    wechatpay_new_public_key_file: Path | None = None
    # a delivery leased by a process that died is tried again after this (keep it above the
    # 15 s HTTP timeout so two instances never send the same attempt at once)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # `scanpay deliver` on SQLite: how often it looks for new events (docs/webhooks.md)
    webhook_watch_seconds: float = Field(default=0.01, gt=0, le=5)
    # deliveries in flight at once per delivering process, and to one endpoint of them
    webhook_concurrency: int = Field(default=256, ge=1, le=4096)
    webhook_endpoint_concurrency: int = Field(default=32, ge=1, le=4096)

    @field_validator("public_base_url", "wechat_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("notify_allow_list")
    @classmethod
    def _networks(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry[:64]!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _api_material(self) -> Settings:
        if self.api_version == "v2" and self.api_v2_key is None:
            raise ValueError("SCANPAY_API_V2_KEY: required when SCANPAY_API_VERSION is v2")
        if self.api_version == "v3":
            if self.api_v3_key is None:
                raise ValueError(
                    "SCANPAY_API_V3_KEY: required (exactly 32 characters) when "
                    "SCANPAY_API_VERSION is v3"
                )
            if self.merchant_key_file is None and self.merchant_private_key is None:
                raise ValueError(
                    "SCANPAY_MERCHANT_KEY_FILE or SCANPAY_MERCHANT_PRIVATE_KEY: one is "
                    "required when SCANPAY_API_VERSION is v3 (it signs requests)"
                )
            if self.merchant_cert_file is None and self.merchant_serial_no is None:
                raise ValueError(
                    "SCANPAY_MERCHANT_CERT_FILE or SCANPAY_MERCHANT_SERIAL_NO: one is "
                    "required when SCANPAY_API_VERSION is v3 (it names the signing key)"
                )
        if (self.wechatpay_public_key_id is None) != (self.wechatpay_public_key_file is None):
            raise ValueError(
                "SCANPAY_WECHATPAY_PUBLIC_KEY_ID and SCANPAY_WECHATPAY_PUBLIC_KEY_FILE: "
                "set both (public-key mode) or neither"
            )
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

    @model_validator(mode="after")
    def _new_public_key(self) -> Settings:
        if (self.wechatpay_new_public_key_id is None) != (
            self.wechatpay_new_public_key_file is None
        ):
            raise ValueError(
                "wechatpay_new_public_key_id and wechatpay_new_public_key_file go together"
            )
        return self
