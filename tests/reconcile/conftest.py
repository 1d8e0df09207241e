"""Fixtures: simulator credentials made once per session, and a fresh migrated shop database
per test: SQLite always, PostgreSQL too when ``SCANPAY_TEST_POSTGRES_URL`` names a server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.simulator import generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.store.migrate import make_engine, upgrade

POSTGRES_URL = os.environ.get("SCANPAY_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="session")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("SCANPAY_TEST_POSTGRES_URL is not set")
    name = "scanpay_rec_" + secrets.token_hex(6)
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng = make_engine(sa.make_url(POSTGRES_URL).set(database=name).render_as_string(False))
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
