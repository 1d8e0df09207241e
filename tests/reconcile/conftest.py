"""Fixtures: simulator credentials made once per session, and a fresh migrated shop database
per test: SQLite always, PostgreSQL too when ``SCANPAY_TEST_POSTGRES_URL`` names a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.simulator import generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from tests.databases import BACKENDS, migrated_engine


@pytest.fixture(scope="session")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with migrated_engine(request.param, tmp_path, "scanpay_rec_") as eng:
        yield eng
