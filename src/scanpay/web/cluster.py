"""Running as one of several instances: engine options, LISTEN, ``/readyz`` and the drain.

:func:`engine_options` turns the pool settings into engine arguments (PostgreSQL only).
:class:`ClusterRuntime` runs, in the app's lifespan, the
:class:`~scanpay.store.listen.ChangeListener` that feeds the status hub on PostgreSQL, and
:meth:`ClusterRuntime.drain` starts a graceful shutdown (``scanpay serve`` calls it on SIGTERM
before uvicorn stops accepting): ``/readyz`` answers 503 and every status stream ends with a
``retry:`` hint. ``/readyz`` is ready when the database answers and its schema is this code's
(or newer: an older instance keeps serving during a rolling upgrade's expand step).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from scanpay.config import Settings
from scanpay.store.listen import ChangeListener
from scanpay.store.migrate import SchemaState, known_revisions, schema_state
from scanpay.web.hub import ChangeHub

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

# Prepared statements off is the sign of a transaction pooler (PgBouncer), where LISTEN seems
# to work but hears nothing (tests/web/test_pgbouncer.py tried it): say so at start.
LISTEN_THROUGH_POOLER: Final = (
    "SCANPAY_DATABASE_PREPARED_STATEMENTS=false but no SCANPAY_DATABASE_LISTEN_URL: behind a"
    " transaction pooler such as PgBouncer, LISTEN needs a direct connection to PostgreSQL;"
    " without it status streams hear of other instances' changes only through the"
    " SCANPAY_STREAM_POLL_SECONDS poll"
)


def engine_options(settings: Settings) -> dict[str, Any]:
    """Pool sizes (and prepared statements off, for PgBouncer) for a PostgreSQL engine."""
    if sa.make_url(settings.database_url).get_backend_name() == "sqlite":
        return {}
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout_seconds,
    }
    if not settings.database_prepared_statements:
        options["connect_args"] = {"prepare_threshold": None}
    return options


class ClusterRuntime:
    def __init__(self, settings: Settings, engine: sa.Engine, hub: ChangeHub) -> None:
        self.engine = engine
        self.hub = hub
        self.draining = False
        self.listener: ChangeListener | None = None
        if engine.dialect.name == "postgresql":
            url = settings.database_listen_url or settings.database_url
            # LISTEN only while this instance has status streams (scanpay.store.listen)
            self.listener = ChangeListener(
                url, hub.changed, hub.catch_up, wanted=lambda: hub.open_streams() > 0
            )
            if not settings.database_prepared_statements and not settings.database_listen_url:
                log.warning(LISTEN_THROUGH_POOLER)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if self.listener is not None:
            await self.listener.start()
        try:
            yield
        finally:
            if self.listener is not None:
                await self.listener.stop()

    def drain(self) -> None:
        """Stop being ready and end every status stream with a ``retry:`` hint."""
        if not self.draining:
            log.info("draining: /readyz now 503, status streams told to reconnect elsewhere")
        self.draining = True
        self.hub.drain()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details) — blocking: run it off the event loop."""
        if self.draining:
            return False, {"status": "draining"}
        try:
            state: SchemaState = schema_state(self.engine)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            return False, {"status": "database unreachable", "error": type(exc).__name__}
        details: dict[str, Any] = {"schema": state.current, "head": known_revisions()[-1]}
        if state.behind:
            return False, {"status": "schema behind", **details}
        if self.listener is not None:
            details["listen"] = "connected" if self.listener.connected.is_set() else "retrying"
        return True, {"status": "ready", **details}


def get_cluster(request: Request) -> ClusterRuntime:
    runtime: ClusterRuntime = request.app.state.cluster
    return runtime


@router.get("/readyz", summary="Readiness: database reachable, schema current, not draining")
async def readyz(request: Request) -> JSONResponse:
    ready, details = await run_in_threadpool(get_cluster(request).readiness)
    return JSONResponse(details, status_code=200 if ready else 503)
