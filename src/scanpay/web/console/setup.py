"""``install(app, ...)``: the console's state, routes and static files on the service's app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from scanpay.config import Settings
from scanpay.domain.refunds import RefundService
from scanpay.domain.service import PaymentService
from scanpay.errors import ConfigurationError
from scanpay.store.console_queries import ConsoleQueries
from scanpay.store.operators import OperatorStore
from scanpay.web.console import actions as actions  # registers the POST routes
from scanpay.web.console.i18n import load_translators
from scanpay.web.console.render import make_environment
from scanpay.web.console.routes import router
from scanpay.web.console.state import ConsoleState
from scanpay.web.hub import ChangeHub
from scanpay.wechat.secret import Secret

STATIC: Final = Path(__file__).resolve().parent / "static"


def install(
    app: FastAPI,
    settings: Settings,
    engine: sa.Engine,
    service: PaymentService,
    refunds: RefundService,
    hub: ChangeHub,
    clock: Callable[[], datetime],
) -> ConsoleState:
    """Add the console to ``app``; the returned state is where later parts plug in."""
    try:
        zone = ZoneInfo(settings.console_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError("console_timezone is not a known time zone") from None
    key = settings.api_v3_key
    state = ConsoleState(
        settings=settings,
        operators=OperatorStore(engine),
        queries=ConsoleQueries(engine),
        service=service,
        refunds=refunds,
        hub=hub,
        clock=clock,
        templates=make_environment(),
        translators=load_translators(),
        zone=zone,
        api_v3_key=None if key is None else Secret(key.get_secret_value()),
    )
    app.state.console = state
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    return state
