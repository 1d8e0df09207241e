"""Fixtures: simulator credentials made once per session, a migrated SQLite shop database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanpay.simulator import generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.store.migrate import make_engine, upgrade


@pytest.fixture(scope="session")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    upgrade(eng)
    yield eng
    eng.dispose()
