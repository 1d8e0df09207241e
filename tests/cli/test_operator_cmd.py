"""``scanpay operator``: add (password from stdin), list, disable, enable, reset-password,
against the database named by the same SCANPAY_* settings as ``serve``; no password or hash
is ever printed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.cli.main import main
from scanpay.store.migrate import make_engine
from scanpay.web.console.passwords import verify_password


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ops.sqlite3'}"
    for name, value in {
        "DATABASE_URL": url,
        "SHOP_API_KEY": "shop-key-for-cli-tests-0123",
        "APPID": "wx0000000000000001",
        "MCHID": "1900000001",
        "API_V2_KEY": "k" * 32,
    }.items():
        monkeypatch.setenv("SCANPAY_" + name, value)
    return url


def test_operator_commands(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "first-password-123"
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["operator", "add", "ada", "--role", "admin", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("too-short\n"))
    assert main(["operator", "add", "bob", "--role", "viewer", "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["operator", "add", "ada", "--role", "viewer", "--password-stdin"]) == 2
    assert main(["operator", "disable", "ada"]) == 0
    assert main(["operator", "disable", "nobody"]) == 2
    assert main(["operator", "list"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("second-password-456\n"))
    assert main(["operator", "reset-password", "ada", "--password-stdin"]) == 0
    out, err = capsys.readouterr()
    assert "ada\tadmin\tdisabled" in out
    assert "bob" not in out
    engine = make_engine(env)
    with engine.connect() as conn:
        (stored,) = conn.execute(sa.text("SELECT password_hash FROM operators")).one()
        audit = conn.execute(sa.text("SELECT operator_name, detail FROM operator_actions")).all()
    engine.dispose()
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "second-password-456")
    assert not verify_password(stored, password)
    for secret in (password, "second-password-456", stored, "too-short"):
        assert secret not in out + err
    assert len(audit) == 3
    assert all(name.startswith("cli:") for name, _detail in audit)
