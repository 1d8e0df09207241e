"""Settings of the merchant service: environment variables ``SCANPAY_*`` and/or an env file.

Keys are :class:`pydantic.SecretStr` (never shown in reprs or logs). Nothing reads the
environment at import time: build ``Settings()`` where the process starts (``scanpay serve``).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    api_v2_key: SecretStr = Field(min_length=1)
    sign_type: Literal["MD5", "HMAC-SHA256"] = "HMAC-SHA256"
    simulator_phone_url: str | None = None
    notify_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    wechat_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    checkout_poll_ms: int = Field(default=2000, ge=200)
    demo_product_name: str = "Green tea, 250 g"
    demo_product_amount: int = Field(default=1, ge=1, lt=2**31)
    migrate_on_startup: bool = True

    @field_validator("public_base_url", "wechat_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def notify_url_v2(self) -> str:
        return f"{self.public_base_url}/notify/v2"
