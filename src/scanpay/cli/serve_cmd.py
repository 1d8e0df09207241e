"""``scanpay serve``: the merchant service from configuration, under uvicorn.

Configuration comes from ``SCANPAY_*`` environment variables and, with ``--env-file``, a
dotenv file (see docs/service.md). The schema is upgraded to the latest migration at start
(unless ``SCANPAY_MIGRATE_ON_STARTUP=false``); a schema newer than this code is refused.

On SIGTERM (or Ctrl-C) the service drains (docs/deployment.md): ``/readyz`` turns 503, status
streams end with a ``retry:`` hint, the listening socket closes, requests in flight finish
(up to ``shutdown_grace_seconds``), then the reconciler stops.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn
from pydantic import ValidationError as SettingsError

from scanpay.config import Settings
from scanpay.errors import ConfigurationError
from scanpay.web.app import create_app


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument(
        "--env-file", type=Path, default=None, help="a dotenv file with SCANPAY_* settings"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn and scanpay log level")


def load_settings(env_file: Path | None) -> Settings:
    try:
        if env_file is not None:
            if not env_file.is_file():
                raise ConfigurationError(f"no such env file: {env_file}")
            return Settings(_env_file=env_file)  # type: ignore[call-arg]
        return Settings()  # type: ignore[call-arg]
    except SettingsError as exc:
        names = ", ".join(
            "SCANPAY_" + str(err["loc"][0]).upper() for err in exc.errors() if err["loc"]
        )
        raise ConfigurationError(f"invalid or missing settings: {names}") from None


class DrainingServer(uvicorn.Server):
    """uvicorn, telling the app to drain before it stops accepting (see the docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drain()
        await super().shutdown(sockets)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = load_settings(args.env_file)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )
    DrainingServer(config, app.state.cluster.drain).run()
    return 0
