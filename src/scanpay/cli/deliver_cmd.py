"""``scanpay deliver``: deliver webhooks only, beside ``scanpay serve`` instances that run with
``SCANPAY_WEBHOOKS_ENABLED=false`` (docs/webhooks.md, "Delivery processes").

The same settings as ``scanpay serve`` (environment and ``--env-file``); of them it uses the
database, the webhook settings and the pool settings. ``SCANPAY_WEBHOOKS_ENABLED`` does not
apply to it: a delivery process always delivers. Several may run side by side on one database.
SIGTERM or Ctrl-C stops it gracefully: the deliveries in flight finish and are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import sqlalchemy as sa

from scanpay.cli.serve_cmd import load_settings
from scanpay.config import Settings
from scanpay.errors import ConfigurationError
from scanpay.observability import logs
from scanpay.store.migrate import check_schema, make_engine
from scanpay.web.cluster import engine_options
from scanpay.webhooks.deliver import Deliverer

log = logging.getLogger("scanpay.deliver")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--env-file", type=Path, default=None, help="a dotenv file with SCANPAY_* settings"
    )
    parser.add_argument("--log-level", default="info", help="log level")


def open_database(settings: Settings) -> sa.Engine:
    """The engine, with the schema checked (and upgraded, as ``serve`` does); a clear error
    naming the setting, never the URL (it may hold a password)."""
    try:
        engine = make_engine(settings.database_url, **engine_options(settings))
    except ValueError as exc:  # make_engine's own refusals (an in-memory SQLite database)
        raise ConfigurationError(f"SCANPAY_DATABASE_URL: {exc}") from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        raise ConfigurationError(
            "SCANPAY_DATABASE_URL: not a database URL scanpay can use "
            "(sqlite:///path or postgresql+psycopg://...)"
        ) from None
    try:
        check_schema(engine, upgrade_first=settings.migrate_on_startup)
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigurationError(
            f"SCANPAY_DATABASE_URL: cannot use the database ({type(exc).__name__})"
        ) from None
    return engine


async def deliver(deliverer: Deliverer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with deliverer.running():
        log.info("deliver: running as %s on %s; new events by %s", deliverer.worker.name,
                 deliverer.engine.url.render_as_string(hide_password=True),
                 deliverer.how)  # fmt: skip
        await stop.wait()
        log.info("deliver: stopping")
    log.info("deliver: stopped")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.env_file)
    logs.configure(settings.log_format, args.log_level)
    engine = open_database(settings)
    try:
        try:
            deliverer = Deliverer(settings, engine)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        asyncio.run(deliver(deliverer))
    finally:
        engine.dispose()
    return 0
