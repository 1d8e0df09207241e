"""A service wired to the simulator for API v2, v3 public-key mode or v3 certificate mode,
on the simulator's test clock (starting now, so v3 signatures stay inside their window)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from tests.web.conftest import SettingsFactory, Shop, simulated_shop

MODES = ("v2", "v3-public-key", "v3-certificates")


def v3_settings(creds: MerchantCredentials, folder: Path, *, public_key: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "api_version": "v3",
        "api_v3_key": creds.api_v3_key.reveal(),
        "merchant_private_key": creds.merchant_private_key_pem.reveal(),
        "merchant_serial_no": creds.merchant_serial_no,
    }
    if public_key:
        path = folder / "wechatpay_public_key.pem"
        path.write_text(creds.wechatpay_public_key_pem)
        values.update(wechatpay_public_key_id=creds.wechatpay_public_key_id,
                      wechatpay_public_key_file=path)  # fmt: skip
    return values


async def open_shop(
    make_settings: SettingsFactory,
    folder: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
    mode: str,
) -> AsyncIterator[Shop]:
    creds = credentials[0]
    extra = {} if mode == "v2" else v3_settings(creds, folder, public_key=mode == "v3-public-key")
    async with simulated_shop(make_settings, credentials, reconciler_enabled=False, **extra) as s:
        yield s
