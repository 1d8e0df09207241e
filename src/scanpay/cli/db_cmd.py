"""``scanpay db upgrade|current``: the database schema, outside ``scanpay serve``.

``upgrade`` applies the migrations this scanpay has (PostgreSQL: under an advisory lock, so
it is safe while instances run and start); ``current`` prints the database's revision and
this code's newest, and exits 1 when they differ (3 when the database is newer). The
database comes from ``--database-url``, else ``SCANPAY_DATABASE_URL`` (environment or
``--env-file``). Migrations are written expand-then-contract (docs/deployment.md), so
instances of the previous version keep running on an upgraded schema.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError as SettingsError
from pydantic_settings import BaseSettings, SettingsConfigDict

from scanpay.errors import ConfigurationError
from scanpay.store.migrate import make_engine, schema_state, upgrade

DEFAULT_URL = "sqlite:///var/scanpay.sqlite3"


class DatabaseSettings(BaseSettings):
    """Only what the schema commands need (the service's other settings may be absent)."""

    model_config = SettingsConfigDict(env_prefix="SCANPAY_", extra="ignore", frozen=True)

    database_url: str = DEFAULT_URL


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("upgrade", "current"), help="what to do")
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL of the database")
    parser.add_argument(
        "--env-file", type=Path, default=None, help="a dotenv file with SCANPAY_DATABASE_URL"
    )


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    try:
        if args.env_file is not None:
            if not args.env_file.is_file():
                raise ConfigurationError(f"no such env file: {args.env_file}")
            return DatabaseSettings(_env_file=args.env_file).database_url  # type: ignore[call-arg]
        return DatabaseSettings().database_url
    except SettingsError:
        raise ConfigurationError("invalid setting: SCANPAY_DATABASE_URL") from None


def run(args: argparse.Namespace) -> int:
    url = database_url(args)
    try:
        engine = make_engine(url)
    except (sa.exc.ArgumentError, ValueError):  # the message may quote the URL (a password)
        raise ConfigurationError("the database URL cannot be used") from None
    try:
        state = schema_state(engine)
        if args.action == "upgrade":
            if state.newer:
                raise ConfigurationError(f"the database {state.describe()}: nothing to do here")
            before = state.current
            upgrade(engine)
            state = schema_state(engine)
            print(f"upgraded: {before or '(empty)'} -> {state.current}")
            return 0
        print(f"database: {state.current or '(empty)'}")
        print(f"this scanpay: {state.head}")
        print(state.describe())
        return 3 if state.newer else 1 if state.behind else 0
    except sa.exc.OperationalError as exc:
        raise ConfigurationError(f"cannot reach the database ({type(exc.orig).__name__})") from None
    finally:
        engine.dispose()
