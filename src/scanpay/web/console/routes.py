"""The console's pages (GET) under ``/console``: today at a glance, orders, one order's
story, alerts, refused notifications, the audit log and operators.

Every page needs a session (else a 303 to the sign-in page); errors are pages too, in the
operator's language, never JSON. State-changing routes are in :mod:`.actions`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from scanpay.domain.model import OrderStatus
from scanpay.domain.operators import Action
from scanpay.domain.refunds import RefundStatus
from scanpay.errors import (
    ApiError,
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ScanpayError,
    TransportError,
    ValidationError,
)
from scanpay.store.console_queries import TAKEN, OrderFilter, OrderStory, day_bounds
from scanpay.web.console.auth import (
    SIGN_IN_COOKIE,
    Forbidden,
    Locked,
    Session,
    SignInRequired,
    current_session,
    new_sign_in_token,
    secure,
)
from scanpay.web.console.render import HEADERS, page, see_other, yuan
from scanpay.web.console.state import ConsoleState, TimelineEntry
from scanpay.web.console.timeline import build_timeline, decrypted_v3
from scanpay.web.cursors import make_cursor, read_cursor

log = logging.getLogger(__name__)

PAGE_SIZE: Final = 50
EXPORT_LIMIT: Final = 100_000
AMOUNT: Final = re.compile(r"\d{1,8}(\.\d{1,2})?")
DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
STUCK_AFTER: Final = timedelta(minutes=10)
WEEK_FIGURES_TTL: Final = 60.0  # seconds

router = APIRouter(prefix="/console", include_in_schema=False)
Handler = Callable[[Request], Awaitable[Response]]


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def guarded(handler: Handler) -> Handler:
    """Turn the console's errors into pages (and a missing session into the sign-in page)."""

    @wraps(handler)
    async def run(request: Request) -> Response:
        state = console_state(request)
        try:
            return await handler(request)
        except SignInRequired as exc:
            target = request.url.path if request.method == "GET" else "/console"
            query = urlencode({"next": target, "why": exc.reason})
            return see_other(f"/console/sign-in?{query}")
        except ScanpayError as exc:
            status, title = _status_of(exc)
            session = getattr(request.state, "console_session", None)
            if status >= 500:
                log.warning("console %s %s failed: %s", request.method, request.url.path, exc.code)
            return page(
                state, request, "error.html", session, status, title=title, message=exc.message
            )

    return run


def _status_of(exc: ScanpayError) -> tuple[int, str]:
    if isinstance(exc, Locked):
        return 429, "Too many attempts"
    if isinstance(exc, Forbidden):
        return 403, "Not allowed"
    if isinstance(exc, NotFoundError):
        return 404, "Not found"
    if isinstance(exc, ConflictError | InvalidTransitionError):
        return 409, "Not possible now"
    if isinstance(exc, ValidationError):
        return 422, "Please check the input"
    if isinstance(exc, TransportError | ApiError):
        return 502, "WeChat Pay did not answer as expected"
    return 500, "Something went wrong"


async def signed_in(request: Request) -> Session:
    session = await current_session(console_state(request), request)
    request.state.console_session = session
    return session


# ---- sign-in ---------------------------------------------------------------------------


@router.get("/sign-in")
@guarded
async def sign_in_page(request: Request) -> Response:
    token = request.cookies.get(SIGN_IN_COOKIE) or new_sign_in_token()
    why = request.query_params.get("why", "")
    response = page(
        console_state(request),
        request,
        "sign_in.html",
        None,
        sign_in_token=token,
        next=safe_next(request.query_params.get("next")),
        why=why if why in ("expired", "signed_out", "bye") else "",
        error="",
        name="",
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        path="/console/sign-in",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    return response


def safe_next(value: str | None) -> str:
    """Only a console path: never another site after signing in."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


# ---- today at a glance -----------------------------------------------------------------


@router.get("")
@guarded
async def today(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    now = state.clock()
    periods = []
    for days in (1, 7):
        start, end = day_bounds(now, days, state.zone)
        key = (start, end)
        kept = state.figures_cache.get(key)
        if days > 1 and kept is not None and time.monotonic() - kept[0] < WEEK_FIGURES_TTL:
            figures = kept[1]  # the week's figures may be a minute old; today's are live
        else:
            figures = await state.db(state.queries.figures, start, end)
            if days > 1:
                state.figures_cache.clear()
                state.figures_cache[key] = (time.monotonic(), figures)
        periods.append((days, figures))
    backlog = await state.db(state.queries.backlog, now)
    open_alerts = await state.db(state.queries.open_alert_count)
    return page(
        state,
        request,
        "today.html",
        session,
        periods=periods,
        backlog=backlog,
        open_alerts=open_alerts,
    )


# ---- orders ----------------------------------------------------------------------------


def _fen(value: str, what: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not AMOUNT.fullmatch(value):
        raise ValidationError(f"{what}: an amount in yuan such as 12.50")
    whole, _, cents = value.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


def _day(state: ConsoleState, value: str, what: str, *, end: bool) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    if not DATE.fullmatch(value):
        raise ValidationError(f"{what}: a date such as 2025-03-01")
    try:
        day = datetime.fromisoformat(value).replace(tzinfo=state.zone)
    except ValueError:
        raise ValidationError(f"{what}: a date such as 2025-03-01") from None
    return day + timedelta(days=1) if end else day


async def _filters(state: ConsoleState, request: Request) -> tuple[OrderFilter, dict[str, str]]:
    q = request.query_params
    form = {name: q.get(name, "")[:100] for name in ("q", "status", "from", "to", "min", "max")}
    status = None
    if form["status"]:
        try:
            status = OrderStatus(form["status"])
        except ValueError:
            raise ValidationError("status: not one of the order statuses") from None
    ids = await state.db(state.queries.find, form["q"]) if form["q"].strip() else None
    filters = OrderFilter(
        status=status,
        created_from=_day(state, form["from"], "from", end=False),
        created_to=_day(state, form["to"], "to", end=True),
        amount_min=_fen(form["min"], "minimum"),
        amount_max=_fen(form["max"], "maximum"),
        order_ids=ids,
    )
    return filters, form


@router.get("/orders")
@guarded
async def orders_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    filters, form = await _filters(state, request)
    cursor = request.query_params.get("cursor", "")[:200]
    refusal = ValidationError("the page link is not one the console made")
    before = read_cursor(cursor, refusal) if cursor else None
    rows = await state.db(state.queries.list_orders, filters, PAGE_SIZE + 1, before)
    counts = await state.db(state.queries.count_by_status, filters)
    next_url = None
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1].order
        after = make_cursor(last.created_at, last.id)
        query = {k: v for k, v in form.items() if v} | {"cursor": after}
        next_url = "/console/orders?" + urlencode(query)
    if form["q"].strip() and filters.order_ids and len(filters.order_ids) == 1 and before is None:
        found = filters.order_ids[0]
        if request.query_params.get("go") == "1":
            return see_other(f"/console/orders/{quote(found)}")
    export = "/console/orders.csv?" + urlencode({k: v for k, v in form.items() if v})

    def status_url(status: str) -> str:
        return "/console/orders?" + urlencode(
            {k: v for k, v in form.items() if v} | {"status": status}
        )

    return page(
        state,
        request,
        "orders.html",
        session,
        rows=rows[:PAGE_SIZE],
        counts=counts,
        form=form,
        statuses=list(OrderStatus),
        next_url=next_url,
        first_page=before is not None,
        export_url=export,
        status_url=status_url,
    )


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # a cell that a spreadsheet would run as a formula is kept as text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/orders.csv")
@guarded
async def orders_csv(request: Request) -> Response:
    await signed_in(request)
    state = console_state(request)
    filters, _form = await _filters(state, request)
    zone = state.zone

    async def lines() -> AsyncIterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "id",
                "created_at",
                "status",
                "amount_fen",
                "currency",
                "description",
                "out_trade_no",
                "transaction_id",
            ]
        )
        batches = state.queries.export(filters, EXPORT_LIMIT)
        while True:
            batch = await state.db(next, batches, None)
            if batch is None:
                break
            for row in batch:
                order = row.order
                writer.writerow(
                    [
                        _csv_cell(v)
                        for v in (
                            order.id,
                            order.created_at.astimezone(zone).isoformat(),
                            order.status.value,
                            order.amount,
                            order.currency,
                            order.description,
                            row.out_trade_no,
                            row.transaction_id,
                        )
                    ]
                )
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()

    headers = {
        **HEADERS,
        "Content-Disposition": 'attachment; filename="scanpay-orders.csv"',
    }
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/orders/{order_id}")
@guarded
async def order_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    order_id = request.path_params["order_id"]
    story = await state.db(state.queries.story, order_id)
    if story is None:
        raise NotFoundError("no such order")
    actions = await state.db(lambda: state.operators.actions(limit=100, target=order_id))
    extra: list[TimelineEntry] = []
    for source in state.timeline_sources:
        extra.extend(await source(order_id))
    refundable = refundable_amount(story)
    return page(
        state,
        request,
        "order.html",
        session,
        story=story,
        timeline=build_timeline(story, actions, extra, state.local_time, yuan),
        refundable=refundable,
        order_actions=state.order_actions,
        done=request.query_params.get("done", "")[:32],
    )


def refundable_amount(story: OrderStory) -> int:
    """What a refund of the order's payment may still take (0 when it is not refundable)."""
    if story.order.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        return 0
    held = sum(
        r.amount
        for r in story.refunds
        if r.settles_order and r.status not in (RefundStatus.CLOSED, RefundStatus.FAILED)
    )
    return story.order.amount - held


# ---- notifications ---------------------------------------------------------------------


@router.get("/notifications")
@guarded
async def refused_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    since = state.clock() - timedelta(days=7)
    groups = await state.db(state.queries.refused_groups, since)
    latest = await state.db(state.queries.refused, since, 100)
    return page(state, request, "notifications.html", session, groups=groups, latest=latest)


@router.get("/notifications/{notification_id}")
@guarded
async def notification_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    raw_id = request.path_params["notification_id"]
    if not raw_id.isdigit() or len(raw_id) > 12:
        raise NotFoundError("no such notification")
    found = await state.db(state.queries.notification, int(raw_id))
    if found is None:
        raise NotFoundError("no such notification")
    note, body = found
    order_id = (
        await state.db(state.queries.order_of, note.out_trade_no) if note.out_trade_no else None
    )
    decrypted = None
    if request.query_params.get("decrypted") == "1":
        session.require(Action.VIEW_DECRYPTED)
        if not note.api.startswith("v3") or note.outcome not in TAKEN:
            raise ValidationError("only a verified API v3 notification has content to decrypt")
        if state.api_v3_key is None:
            raise ValidationError("API v3 is not configured")
        decrypted = decrypted_v3(body, state.api_v3_key)
        await state.db(
            state.operators.record_action,
            session.operator,
            session.operator.name,
            Action.VIEW_DECRYPTED,
            order_id,
            "ok",
            {"notification": note.id},
            session.address,
            state.clock(),
        )
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):  # not JSON after all: shown as received
            text = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    return page(
        state,
        request,
        "notification.html",
        session,
        note=note,
        body=text,
        order_id=order_id,
        decrypted=decrypted,
        can_decrypt=note.api.startswith("v3") and note.outcome in TAKEN,
    )


# ---- alerts, audit, operators ----------------------------------------------------------


@router.get("/alerts")
@guarded
async def alerts_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    acknowledged = request.query_params.get("show") == "acknowledged"
    alerts = await state.db(lambda: state.queries.alerts(acknowledged=acknowledged, limit=200))
    now = state.clock()
    stuck = (
        [] if acknowledged else await state.db(state.queries.stuck_refunds, now - STUCK_AFTER, 100)
    )
    extra = []
    if not acknowledged:
        for source in state.attention_sources:
            extra.extend(await source(now))
    return page(
        state,
        request,
        "alerts.html",
        session,
        alerts=alerts,
        stuck=stuck,
        extra=extra,
        acknowledged=acknowledged,
    )


@router.get("/audit")
@guarded
async def audit_page(request: Request) -> Response:
    session = await signed_in(request)
    state = console_state(request)
    before = request.query_params.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 12 else None
    actions = await state.db(
        lambda: state.operators.actions(limit=PAGE_SIZE + 1, before_id=before_id)
    )
    next_url = (
        f"/console/audit?before={actions[PAGE_SIZE - 1].id}" if len(actions) > PAGE_SIZE else None
    )
    return page(
        state, request, "audit.html", session, actions=actions[:PAGE_SIZE], next_url=next_url
    )


@router.get("/operators")
@guarded
async def operators_page(request: Request) -> Response:
    session = await signed_in(request)
    session.require(Action.MANAGE_OPERATORS)
    state = console_state(request)
    found = await state.db(state.operators.list_operators)
    return page(
        state,
        request,
        "operators.html",
        session,
        operators=found,
        roles=["viewer", "support", "admin"],
    )


__all__ = ["HTMLResponse", "console_state", "guarded", "router", "signed_in"]
