"""Settings that explain themselves (issue 9): the table in docs/configuration.md is generated
from ``Settings`` (this fails when they differ), every setting is described, and every
validation error names the setting and why, never the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanpay import settings_doc
from scanpay.cli import serve_cmd
from scanpay.config import Settings
from scanpay.errors import ConfigurationError

BASE = {
    "SCANPAY_SHOP_API_KEY": "shop-key-0123456789abcdef",
    "SCANPAY_APPID": "wx0000000000000001",
    "SCANPAY_MCHID": "1900000001",
    "SCANPAY_API_V2_KEY": "k" * 32,
}


def test_the_docs_table_is_generated_from_settings() -> None:
    document = settings_doc.DOC.read_text(encoding="utf-8")
    assert settings_doc.render(document) == document, (
        "docs/configuration.md is out of date: python -m scanpay.settings_doc --write"
    )
    for name in Settings.model_fields:
        assert f"`SCANPAY_{name.upper()}`" in document


def test_every_setting_is_described() -> None:
    assert settings_doc.missing_meanings() == []
    for lifecycle in ("payment_window_seconds", "query_first_delay_seconds",
                      "reconciler_lease_seconds", "order_deadline_seconds"):  # fmt: skip
        assert lifecycle in settings_doc.MEANINGS


@pytest.mark.parametrize(
    ("changes", "names", "why", "secret"),
    [
        ({"SCANPAY_API_VERSION": "v3", "SCANPAY_API_V3_KEY": "too-short-secret-value",
          "SCANPAY_MERCHANT_SERIAL_NO": "ABCDEF", "SCANPAY_MERCHANT_PRIVATE_KEY": "x"},
         ["SCANPAY_API_V3_KEY"], "at least 32 character", "too-short-secret-value"),
        ({"SCANPAY_API_V2_KEY": ""}, ["SCANPAY_API_V2_KEY"], "at least 1 character", None),
        ({"SCANPAY_SHOP_API_KEY": "short-shop-key"}, ["SCANPAY_SHOP_API_KEY"],
         "at least 16 character", "short-shop-key"),
        ({"SCANPAY_PAYMENT_WINDOW_SECONDS": "60"}, ["SCANPAY_PAYMENT_WINDOW_SECONDS"],
         "greater than or equal to 360", None),
        ({"SCANPAY_NOTIFY_ALLOW_LIST": "10.0.0.0/8, nonsense"}, ["SCANPAY_NOTIFY_ALLOW_LIST"],
         "not an IP address or network", None),
        ({"SCANPAY_API_VERSION": "v3"}, ["SCANPAY_API_V3_KEY"], "exactly 32 characters", None),
        ({"SCANPAY_APPID": None}, ["SCANPAY_APPID"], "required, not set", None),
        ({"SCANPAY_LOG_FORMAT": "xml"}, ["SCANPAY_LOG_FORMAT"], "'text' or 'json'", None),
    ],
)  # fmt: skip
def test_validation_errors_name_the_setting_and_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, str | None],
    names: list[str],
    why: str,
    secret: str | None,
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SCANPAY_{name.upper()}", raising=False)
    values = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    env = tmp_path / "scanpay.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    with pytest.raises(ConfigurationError) as caught:
        serve_cmd.load_settings(env)
    message = caught.value.message
    for name in names:
        assert f"{name}: " in message
    assert why in message
    if secret is not None:
        assert secret not in message
