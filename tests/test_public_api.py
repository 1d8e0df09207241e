"""The public surface is small and pinned (STYLE.md 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import scanpay
import scanpay.client

EXPECTED = [
    "ApiError",
    "ConfigurationError",
    "DecryptionError",
    "DomainError",
    "MalformedMessageError",
    "ProtocolError",
    "RetryableApiError",
    "ScanpayError",
    "Settings",
    "SignatureError",
    "Simulator",
    "StaleMessageError",
    "TransportError",
    "UnknownKeyError",
    "V2Client",
    "V3Client",
    "__version__",
    "create_app",
]


def test_exported_names_are_pinned_and_sorted() -> None:
    assert scanpay.__all__ == EXPECTED
    assert sorted(scanpay.__all__) == scanpay.__all__


@pytest.mark.parametrize("name", EXPECTED)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(scanpay, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = scanpay.NoSuchThing


def test_client_package_exports() -> None:
    assert scanpay.client.__all__ == ["RetryPolicy", "V2Client", "V3Client"]


def test_protocol_core_imports_without_web_or_database_layers() -> None:
    code = (
        "import sys, scanpay.wechat.v2.notify, scanpay.wechat.v3.notify\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'httpx', 'pydantic', 'uvicorn'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
