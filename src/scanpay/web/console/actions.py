"""The console's state-changing routes (POST, form-encoded): sign-in and sign-out, re-query,
close, refund (with a confirmation step), acknowledging alerts, managing operators.

Each checks the session, then the CSRF token, then the role, before anything changes; each
is written to the audit log (who, what, when, from where, outcome), refusals included. A
refund's idempotency key is made when the confirmation page is shown, so submitting the
confirmed form twice refunds once.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from scanpay.domain.closing import close_order
from scanpay.domain.operators import Action, Role
from scanpay.domain.refunds import check_reason
from scanpay.errors import InvalidTransitionError, NotFoundError, ScanpayError, ValidationError
from scanpay.web.console.auth import (
    SIGN_IN_COOKIE,
    Forbidden,
    Locked,
    Session,
    check_csrf,
    check_sign_in_token,
    clear_session_cookie,
    read_form,
    set_session_cookie,
    sign_in,
)
from scanpay.web.console.passwords import hash_password
from scanpay.web.console.render import page, see_other
from scanpay.web.console.routes import (
    _fen,
    console_state,
    guarded,
    refundable_amount,
    router,
    safe_next,
    signed_in,
)
from scanpay.web.console.state import ConsoleState

log = logging.getLogger(__name__)
REFUND_KEY: Final = re.compile(r"console-[A-Za-z0-9_-]{20,64}")


async def audit(
    state: ConsoleState,
    session: Session,
    action: Action,
    target: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await state.db(
        state.operators.record_action,
        session.operator,
        session.operator.name,
        action,
        target,
        outcome,
        detail or {},
        session.address,
        state.clock(),
    )


async def authorised(
    request: Request, action: Action, target: str | None
) -> tuple[Session, dict[str, str]]:
    """The session, its CSRF token checked and its role allowed ``action`` (refusals audited)."""
    state = console_state(request)
    session = await signed_in(request)
    form = await read_form(request)
    try:
        check_csrf(session, form)
    except Forbidden:
        await audit(state, session, action, target, "refused", {"why": "csrf"})
        raise
    if not session.operator.may(action):
        await audit(state, session, action, target, "refused", {"why": "role"})
        raise Forbidden("your role may not do this")
    return session, form


def _order_id(request: Request) -> str:
    order_id: str = request.path_params["order_id"]
    if len(order_id) > 40:
        raise NotFoundError("no such order")
    return order_id


@router.post("/sign-in")
@guarded
async def sign_in_post(request: Request) -> Response:
    state = console_state(request)
    form = await read_form(request)
    check_sign_in_token(request, form)
    name, password = form.get("name", ""), form.get("password", "")
    target = safe_next(form.get("next"))
    address = request.client.host if request.client else "unknown"
    try:
        token, _operator = await sign_in(state, name, password, address)
    except (Forbidden, Locked) as exc:
        status = 429 if isinstance(exc, Locked) else 401
        return page(
            state,
            request,
            "sign_in.html",
            None,
            status,
            sign_in_token=request.cookies.get(SIGN_IN_COOKIE, ""),
            next=target,
            why="",
            error="locked" if isinstance(exc, Locked) else "wrong",
            name=name[:64],
        )
    response = see_other(target)
    set_session_cookie(response, request, token, state.settings.console_max_hours)
    response.delete_cookie(SIGN_IN_COOKIE, path="/console/sign-in")
    return response


@router.post("/sign-out")
@guarded
async def sign_out(request: Request) -> Response:
    state = console_state(request)
    session, _form = await authorised(request, Action.SIGN_OUT, None)
    await state.db(state.operators.end_session, session.token_hash)
    await audit(state, session, Action.SIGN_OUT, None, "ok")
    response = see_other("/console/sign-in?why=bye")
    clear_session_cookie(response, request)
    return response


@router.post("/orders/{order_id}/query")
@guarded
async def requery(request: Request) -> Response:
    state = console_state(request)
    order_id = _order_id(request)
    session, _form = await authorised(request, Action.QUERY, order_id)
    try:
        outcome = await state.service.reconcile(order_id)
    except ScanpayError as exc:
        await audit(state, session, Action.QUERY, order_id, "failed", {"error": exc.code})
        raise
    state.hub.notify(order_id)
    await audit(
        state,
        session,
        Action.QUERY,
        order_id,
        "ok",
        {"verdict": outcome.verdict.value, "answer": outcome.reason[:200]},
    )
    return see_other(f"/console/orders/{quote(order_id)}?done=query")


@router.post("/orders/{order_id}/close")
@guarded
async def close(request: Request) -> Response:
    state = console_state(request)
    order_id = _order_id(request)
    session, _form = await authorised(request, Action.CLOSE, order_id)
    try:
        order = await close_order(state.service, order_id)
    except ScanpayError as exc:
        await audit(state, session, Action.CLOSE, order_id, "failed", {"error": exc.code})
        raise
    state.hub.notify(order_id)
    await audit(state, session, Action.CLOSE, order_id, "ok", {"status": order.status.value})
    return see_other(f"/console/orders/{quote(order_id)}?done=close")


def _refund_form(form: dict[str, str]) -> tuple[int, str]:
    amount = _fen(form.get("amount", ""), "amount")
    if amount is None or amount < 1:
        raise ValidationError("amount: an amount in yuan such as 12.50")
    reason = check_reason(form.get("reason", "").strip() or "refund")
    return amount, reason


@router.post("/orders/{order_id}/refund")
@guarded
async def refund_confirm_page(request: Request) -> Response:
    """Step one: check the input and show what will happen, with a fresh idempotency key."""
    state = console_state(request)
    order_id = _order_id(request)
    session, form = await authorised(request, Action.REFUND, order_id)
    amount, reason = _refund_form(form)
    story = await state.db(state.queries.story, order_id)
    if story is None:
        raise NotFoundError("no such order")
    most = refundable_amount(story)
    if most == 0:
        raise InvalidTransitionError("only a paid order can be refunded", code="NOT_REFUNDABLE")
    if amount > most:
        raise ValidationError("amount: more than the order still has to refund")
    return page(
        state,
        request,
        "refund_confirm.html",
        session,
        order=story.order,
        amount=amount,
        amount_text=form.get("amount", "").strip(),
        reason=reason,
        key="console-" + secrets.token_urlsafe(24),
    )


@router.post("/orders/{order_id}/refund/confirm")
@guarded
async def refund(request: Request) -> Response:
    """Step two: refund (idempotent by the key of step one)."""
    state = console_state(request)
    order_id = _order_id(request)
    session, form = await authorised(request, Action.REFUND, order_id)
    amount, reason = _refund_form(form)
    key = form.get("key", "")
    if not REFUND_KEY.fullmatch(key):
        raise ValidationError("the confirmation is missing; start the refund again")
    detail: dict[str, Any] = {"amount": amount, "reason": reason}
    try:
        placed = await state.refunds.refund(order_id, amount, idempotency_key=key, reason=reason)
    except ScanpayError as exc:
        await audit(state, session, Action.REFUND, order_id, "failed", detail | {"error": exc.code})
        raise
    state.hub.notify(order_id)
    detail |= {"out_refund_no": placed.refund.out_refund_no, "status": placed.refund.status.value}
    if placed.created:
        await audit(state, session, Action.REFUND, order_id, "ok", detail)
    return see_other(f"/console/orders/{quote(order_id)}?done=refund")


@router.post("/alerts/{event_id}/ack")
@guarded
async def acknowledge(request: Request) -> Response:
    state = console_state(request)
    raw = request.path_params["event_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFoundError("no such alert")
    session, form = await authorised(request, Action.ACK_ALERT, f"alert:{raw}")
    note = form.get("note", "")
    await state.db(state.operators.acknowledge, int(raw), session.operator.id, note, state.clock())
    await audit(
        state, session, Action.ACK_ALERT, f"alert:{raw}", "ok", {"note": note.strip()[:200]}
    )
    return see_other("/console/alerts?done=ack")


@router.post("/operators")
@guarded
async def add_operator(request: Request) -> Response:
    state = console_state(request)
    session, form = await authorised(request, Action.MANAGE_OPERATORS, None)
    name = form.get("name", "").strip()
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        raise ValidationError("role: viewer, support or admin") from None
    password_hash = hash_password(form.get("password", ""))
    await state.db(state.operators.add, name, role, password_hash, state.clock())
    await audit(
        state, session, Action.MANAGE_OPERATORS, f"operator:{name}", "ok", {"added": role.value}
    )
    return see_other("/console/operators?done=added")


@router.post("/operators/{name}/{change}")
@guarded
async def change_operator(request: Request) -> Response:
    state = console_state(request)
    name, change = request.path_params["name"], request.path_params["change"]
    if change not in ("disable", "enable"):
        raise NotFoundError("no such page")
    session, _form = await authorised(request, Action.MANAGE_OPERATORS, f"operator:{name}")
    if name == session.operator.name and change == "disable":
        raise ValidationError("you cannot disable yourself")
    await state.db(state.operators.set_disabled, name, change == "disable", state.clock())
    await audit(
        state, session, Action.MANAGE_OPERATORS, f"operator:{name}", "ok", {"change": change}
    )
    return see_other("/console/operators?done=" + change)
