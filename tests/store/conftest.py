"""A fresh, migrated database per test: SQLite always, PostgreSQL when
``SCANPAY_TEST_POSTGRES_URL`` names a server (scripts/postgres.sh prints one)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.sql import SqlStore

POSTGRES_URL = os.environ.get("SCANPAY_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("SCANPAY_TEST_POSTGRES_URL is not set")
    name = "scanpay_test_" + secrets.token_hex(6)
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


@pytest.fixture
def store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine)
    yield store
    store.close()
