"""Reconciliation in the console (issues 12 and 14): the reconciled days with their status
and difference counts (``/console/reconciliation``), and one day's report with its
differences (``/console/reconciliation/{YYYY-MM-DD}``), read from the reconciliation store.
Any signed-in operator may read them (nothing here changes anything)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from scanpay.domain.reconciliation import DifferenceKind, parse_day
from scanpay.errors import NotFoundError, ValidationError
from scanpay.store.crosslink_queries import CrosslinkQueries
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.console.render import page
from scanpay.web.console.routes import console_state, guarded, signed_in

DAYS_PER_PAGE: Final = 31
router = APIRouter(prefix="/console", include_in_schema=False)
NAV_LINK: Final = ("Reconciliation", "/console/reconciliation")


@router.get("/reconciliation")
@guarded
async def days_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    queries: CrosslinkQueries = request.app.state.console_crosslinks
    raw = request.query_params.get("before", "")[:10]
    before = parse_day(raw) if raw else None
    found = await state.db(queries.reconciled_days, DAYS_PER_PAGE + 1, before)
    shown = found[:DAYS_PER_PAGE]
    next_url = (
        f"/console/reconciliation?before={shown[-1].day.isoformat()}"
        if len(found) > DAYS_PER_PAGE
        else None
    )
    return page(
        state,
        request,
        "reconciliation.html",
        session,
        days=shown,
        kinds=[kind.value for kind in DifferenceKind],
        next_url=next_url,
    )


@router.get("/reconciliation/{day}")
@guarded
async def day_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    store: ReconciliationStore = request.app.state.reconciliations
    try:
        day = parse_day(request.path_params["day"][:10])
    except ValidationError:
        raise NotFoundError("no such day: a date such as 2025-03-01") from None
    report = await state.db(store.report, day)
    if report is None:
        raise NotFoundError(f"no reconciliation for {day.isoformat()} (yet)")
    return page(
        state,
        request,
        "reconciliation_day.html",
        session,
        report=report,
        counts=report.counts(),
        previous_day=(day - timedelta(days=1)).isoformat(),
        next_day=(day + timedelta(days=1)).isoformat(),
    )
