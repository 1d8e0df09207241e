"""Engines and schema upgrades: ``make_engine(url)`` and ``upgrade(engine)`` (Alembic, to head).

SQLite gets WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions (so two writers queue on the busy timeout instead of failing on lock upgrade).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
WRITE_OPTION: Final = "scanpay_write"
BUSY_TIMEOUT_MS: Final = 30_000


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for ``url`` set up for scanpay's concurrency rules."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("use a SQLite file: in-memory databases are per-connection")
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, **kwargs
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def writer(engine: sa.Engine) -> sa.Engine:
    """The same engine, flagged so that SQLite transactions take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writer(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
