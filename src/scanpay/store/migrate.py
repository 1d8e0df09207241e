"""Engines and schema upgrades: ``make_engine(url)`` and ``upgrade(engine)`` (Alembic, to head).

SQLite gets WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions (so two writers queue on the busy timeout instead of failing on lock upgrade).
On PostgreSQL an upgrade holds an advisory lock, so instances started together upgrade one
after the other. :func:`schema_state` compares the database's revision with the newest this
code knows (``scanpay db current``, ``/readyz``); :func:`check_schema` refuses a schema newer
than this code (an older scanpay started after an upgrade) or, unless upgrading, an older one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from scanpay.errors import ConfigurationError

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
WRITE_OPTION: Final = "scanpay_write"
BUSY_TIMEOUT_MS: Final = 30_000
UPGRADE_LOCK: Final = 0x5CA7_0010  # pg_advisory_xact_lock key held while upgrading


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


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``."""
    config = _config()
    with writer(engine).begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision this code has, oldest first (the last one is the head)."""
    script = ScriptDirectory.from_config(_config())
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str

    @property
    def known(self) -> bool:
        return self.current is None or self.current in known_revisions()

    @property
    def newer(self) -> bool:
        """The database was upgraded by a newer scanpay than this one."""
        return not self.known

    @property
    def behind(self) -> bool:
        return self.known and self.current != self.head

    def describe(self) -> str:
        if self.newer:
            return f"schema {self.current} is newer than this scanpay knows (newest: {self.head})"
        if self.behind:
            return f"schema {self.current or '(empty)'} is behind: {self.head} expected"
        return f"schema {self.head} (current)"


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def schema_state(engine: sa.Engine) -> SchemaState:
    with engine.connect() as conn:
        current = current_revision(conn)
    return SchemaState(current, known_revisions()[-1])


def check_schema(engine: sa.Engine, *, upgrade_first: bool) -> SchemaState:
    """Bring the schema to this code's head (with ``upgrade_first``) or refuse to run on it:
    a newer schema means an older scanpay after an upgrade (run the newer one); an older one
    without ``upgrade_first`` needs ``scanpay db upgrade``."""
    state = schema_state(engine)
    if state.newer:
        raise ConfigurationError(
            f"the database {state.describe()}: run the scanpay version that upgraded it"
        )
    if state.behind and upgrade_first:
        upgrade(engine)
        state = schema_state(engine)
    if state.behind:
        raise ConfigurationError(f"the database {state.describe()}: run `scanpay db upgrade`")
    return state
