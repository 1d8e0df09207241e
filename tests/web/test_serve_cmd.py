"""``scanpay serve`` configuration loading (the server itself is uvicorn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanpay.cli import serve_cmd
from scanpay.errors import ConfigurationError


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOP_API_KEY", "APPID", "MCHID", "API_V2_KEY", "DATABASE_URL"):
        monkeypatch.delenv(f"SCANPAY_{name}", raising=False)
    env = tmp_path / "scanpay.env"
    env.write_text(
        "SCANPAY_SHOP_API_KEY=0123456789abcdef0123\n"
        "SCANPAY_APPID=wx0000000000000001\n"
        "SCANPAY_MCHID=1900000001\n"
        "SCANPAY_API_V2_KEY=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n"
        "SCANPAY_PUBLIC_BASE_URL=https://shop.example/\n"
    )
    settings = serve_cmd.load_settings(env)
    assert settings.public_base_url == "https://shop.example"
    assert settings.notify_url_v2 == "https://shop.example/notify/v2"
    assert "kkkk" not in repr(settings)
    assert "0123456789abcdef0123" not in repr(settings)


def test_missing_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCANPAY_SHOP_API_KEY", raising=False)
    env = tmp_path / "empty.env"
    env.write_text("")
    with pytest.raises(ConfigurationError, match="SCANPAY_SHOP_API_KEY"):
        serve_cmd.load_settings(env)
    with pytest.raises(ConfigurationError, match="no such env file"):
        serve_cmd.load_settings(tmp_path / "missing.env")
