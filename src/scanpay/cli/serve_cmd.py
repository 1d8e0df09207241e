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
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn
from pydantic import ValidationError as SettingsError

from scanpay.config import Settings
from scanpay.errors import ConfigurationError
from scanpay.observability import logs
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
        raise ConfigurationError("invalid settings: " + explain(exc)) from None


def explain(exc: SettingsError) -> str:
    """Each problem as ``SCANPAY_NAME: why`` (never the value given)."""
    problems: list[str] = []
    for err in exc.errors():
        why = str(err["msg"]).removeprefix("Value error, ")
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "missing":
            why = "required, not set"
        elif kind in ("too_short", "string_too_short"):
            why = f"must be at least {ctx.get('min_length')} character(s) long"
        elif kind in ("too_long", "string_too_long"):
            why = f"must be at most {ctx.get('max_length')} character(s) long"
        if err["loc"]:
            problems.append(f"SCANPAY_{str(err['loc'][0]).upper()}: {why}")
        else:
            problems.append(why)
    return "; ".join(problems)


class DrainingServer(uvicorn.Server):
    """uvicorn, telling the app to drain before it stops accepting (see the docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drain()
        await super().shutdown(sockets)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.env_file)
    # one stream (stderr) for scanpay's lines, its access line and uvicorn's own (issue 9)
    logs.configure(settings.log_format, args.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        # uvicorn's h11 parser, chosen rather than left to chance: httptools (installed for the
        # webhook sender) would otherwise become the parser of every request the service reads
        http="h11",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )
    DrainingServer(config, app.state.cluster.drain).run()
    return 0
