"""The environment of a ``scanpay serve`` / ``scanpay deliver`` child process (or the lines
of an env file) wired to the project's simulator, written once for the tests that start one.

Settings are passed by their ``Settings`` field names (``reconciler_enabled="false"``) and
become ``SCANPAY_<NAME>`` variables; a name ``Settings`` does not know is refused, so a typo
cannot silently leave a default in place."""

from __future__ import annotations

import os
from typing import Final

from scanpay.config import Settings
from scanpay.simulator.credentials import MerchantCredentials

# a reconciler that asks WeChat soon and often, for tests that kill the service mid-payment
FAST_RECONCILER: Final = {
    "query_first_delay_seconds": "1",
    "query_max_delay_seconds": "2",
    "reconciler_poll_seconds": "0.2",
    "reconciler_lease_seconds": "3",
    "wechat_timeout_seconds": "2",
}


def child_environ() -> dict[str, str]:
    """This process's environment without any ``SCANPAY_`` variable, so that settings of the
    machine running the tests never reach a child."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SCANPAY_")}


def scanpay_settings(
    database_url: str, credentials: MerchantCredentials, wechat_url: str, *, shop_key: str,
    public_url: str | None = None, **settings: str,
) -> dict[str, str]:  # fmt: skip
    """``SCANPAY_*`` variables only: the database, the simulator at ``wechat_url`` with its
    merchant ``credentials`` (v2), the shop's API key; then ``settings`` by field name."""
    values = {
        "database_url": database_url,
        "shop_api_key": shop_key,
        "wechat_base_url": wechat_url,
        "appid": credentials.appid,
        "mchid": credentials.mchid,
        "api_v2_key": credentials.api_v2_key.reveal(),
    }
    if public_url is not None:
        values["public_base_url"] = public_url
    values.update(settings)
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"not a setting: {', '.join(unknown)}")
    return {f"SCANPAY_{name.upper()}": value for name, value in values.items()}


def service_env(
    database_url: str, credentials: MerchantCredentials, wechat_url: str, *, shop_key: str,
    public_url: str, **settings: str,
) -> dict[str, str]:  # fmt: skip
    """The whole environment of a child process: :func:`child_environ` and
    :func:`scanpay_settings` (``public_url`` is where the service is reached)."""
    return {
        **child_environ(),
        **scanpay_settings(database_url, credentials, wechat_url, shop_key=shop_key,
                           public_url=public_url, **settings),
    }  # fmt: skip
