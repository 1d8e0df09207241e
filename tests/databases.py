"""Fresh databases for tests: SQLite in the test's folder always, PostgreSQL too when
``SCANPAY_TEST_POSTGRES_URL`` names a server (scripts/postgres.sh prints one); there each
test gets a database of its own, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa

from scanpay.store.migrate import make_engine, upgrade

POSTGRES_URL: Final = os.environ.get("SCANPAY_TEST_POSTGRES_URL", "")
# ``params`` for a fixture that runs its tests on each database
BACKENDS: Final[list[Any]] = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def scratch_postgres(prefix: str, server: str = POSTGRES_URL) -> Iterator[str]:
    """The URL of a new, empty database named ``prefix`` + a random tail on ``server`` (the
    test server by default), dropped on leaving with whatever sessions still use it (the test
    is skipped when no server is set)."""
    if not server:
        pytest.skip("SCANPAY_TEST_POSTGRES_URL is not set")
    name = prefix + secrets.token_hex(6)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield sa.make_url(server).set(database=name).render_as_string(False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def database_url(backend: str, folder: Path, prefix: str) -> Iterator[str]:
    """A fresh, empty database of ``backend`` ("sqlite": a file in ``folder``; "postgres":
    :func:`scratch_postgres`)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'shop.sqlite3'}"
        return
    with scratch_postgres(prefix) as url:
        yield url


@contextmanager
def migrated_engine(backend: str, folder: Path, prefix: str) -> Iterator[sa.Engine]:
    """An engine on a fresh :func:`database_url`, upgraded to the newest revision."""
    with database_url(backend, folder, prefix) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
