"""``scanpay check-config`` against the simulator over HTTP (issue 9): what is right and what
is wrong, one line each, and never a secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanpay.cli.main import main
from scanpay.config import Settings
from scanpay.simulator import Simulator
from tests.service_env import scanpay_settings
from tests.simulator.live import serve_simulator


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Simulator, str]]:
    with serve_simulator() as served:
        yield served


def env_file(folder: Path, values: dict[str, str]) -> Path:
    path = folder / "scanpay.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def base(sim: Simulator, url: str, folder: Path) -> dict[str, str]:
    return scanpay_settings(f"sqlite:///{folder / 'check.sqlite3'}", sim.credentials, url,
                            shop_key="shop-key-0123456789abcdef")  # fmt: skip


def v3(sim: Simulator, folder: Path, api_v3_key: str | None = None) -> dict[str, str]:
    creds = sim.credentials
    key_file = folder / "apiclient_key.pem"
    key_file.write_text(creds.merchant_private_key_pem.reveal())
    return {
        "SCANPAY_API_VERSION": "v3",
        "SCANPAY_API_V3_KEY": api_v3_key or creds.api_v3_key.reveal(),
        "SCANPAY_MERCHANT_KEY_FILE": str(key_file),
        "SCANPAY_MERCHANT_SERIAL_NO": creds.merchant_serial_no,
    }


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SCANPAY_{name.upper()}", raising=False)


@pytest.mark.parametrize("api", ["v2", "v3"])
def test_a_right_configuration_passes(
    live: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    sim, url = live
    values = base(sim, url, tmp_path)
    if api == "v3":
        values.update(v3(sim, tmp_path))
    code = main(["check-config", "--env-file", str(env_file(tmp_path, values))])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "problem" not in out
    assert out.count("\nok") + out.startswith("ok") == 4
    assert ("signed orderquery" if api == "v2" else "platform certificates downloaded") in out


@pytest.mark.parametrize("wrong", ["api_v2_key", "api_v3_key", "appid length", "no key file"])
def test_what_is_wrong_is_said_without_the_secret(
    live: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], wrong: str
) -> None:
    sim, url = live
    values = base(sim, url, tmp_path)
    secret = "W" * 32
    expected = ""
    if wrong == "api_v2_key":
        values["SCANPAY_API_V2_KEY"] = secret
        expected = "WeChat Pay v2"
    elif wrong == "api_v3_key":
        values.update(v3(sim, tmp_path, api_v3_key=secret))
        expected = "WeChat Pay v3"
    elif wrong == "appid length":
        values["SCANPAY_APPID"] = "x" * 40
        expected = "SCANPAY_APPID: must be at most 32 character(s) long"
    else:
        values.update(v3(sim, tmp_path))
        values["SCANPAY_MERCHANT_KEY_FILE"] = str(tmp_path / "missing.pem")
        expected = "key material: cannot read the merchant private key file"
    code = main(["check-config", "--env-file", str(env_file(tmp_path, values))])
    out = capsys.readouterr().out
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("problem")]
    assert len(problems) == 1
    assert expected in problems[0]
    assert secret not in out
    assert sim.credentials.api_v2_key.reveal() not in out
