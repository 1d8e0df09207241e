"""A fresh, migrated database per test: SQLite always, PostgreSQL when
``SCANPAY_TEST_POSTGRES_URL`` names a server (scripts/postgres.sh prints one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.store.sql import SqlStore
from tests.databases import BACKENDS, migrated_engine

# tests/web/test_cluster*.py import it from here
from tests.databases import POSTGRES_URL as POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with migrated_engine(request.param, tmp_path, "scanpay_test_") as eng:
        yield eng


@pytest.fixture
def store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine)
    yield store
    store.close()
