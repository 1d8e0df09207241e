"""Console sign-in, sessions and CSRF.

- **Sessions.** A random 256-bit token in an HttpOnly, SameSite=Lax cookie (Secure when the
  console is reached over https), path ``/console``; the database keeps only its SHA-256. A
  session ends after ``console_idle_minutes`` without a request or ``console_max_hours``
  after sign-in, whichever comes first, and when its operator is disabled or given a new
  password.
- **CSRF.** Every state-changing request carries the session's own random token in a form
  field (``csrf_token``), compared in constant time; the sign-in form (no session yet) uses a
  double-submit cookie. A request without it is refused with 403 and changes nothing.
- **Throttling.** Each failed sign-in for a name (existing or not) costs
  ``console_sign_in_delay_seconds`` times the failures so far before the answer; at
  ``console_sign_in_lock_after`` failures the name is locked for
  ``console_sign_in_lock_minutes`` (even the right password is refused meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from scanpay.domain.operators import MAX_PASSWORD, Action, Operator
from scanpay.errors import ScanpayError, ValidationError
from scanpay.web.console.passwords import hash_password, needs_rehash, verify_password
from scanpay.web.console.state import ConsoleState

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "scanpay_console"
SIGN_IN_COOKIE: Final = "scanpay_console_signin"
PATH: Final = "/console"
TOUCH_EVERY: Final = timedelta(seconds=60)
MAX_FORM: Final = 16 * 1024


class SignInRequired(ScanpayError):
    """No valid session: the browser is sent to the sign-in page."""

    code = "SIGN_IN_REQUIRED"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(ScanpayError):
    """Signed in, but not allowed (role, CSRF)."""

    code = "FORBIDDEN"


class Locked(ScanpayError):
    code = "SIGN_IN_LOCKED"


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf_token: str
    token_hash: str
    address: str

    def require(self, action: Action) -> None:
        if not self.operator.may(action):
            raise Forbidden("your role may not do this")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: the request came over https (directly or through a
    trusted proxy), or the service's public address is https."""
    if request.url.scheme == "https":
        return True
    state = getattr(request.app.state, "console", None)
    return state is not None and state.settings.public_base_url.startswith("https://")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as single values (the first of each)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ValidationError("a form post is expected", code="NOT_A_FORM")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise ValidationError("the form is too large", code="FORM_TOO_LARGE")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("the form could not be read", code="BAD_FORM") from None
    return {name: values[0] for name, values in fields.items()}


def check_csrf(session: Session, form: dict[str, str]) -> None:
    sent = form.get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden("the form's security token is missing or wrong; reload the page")


async def current_session(state: ConsoleState, request: Request) -> Session:
    """The signed-in operator of this request, or :class:`SignInRequired`."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 128:
        raise SignInRequired("signed_out")
    digest = token_hash(token)
    record = await state.db(state.operators.session, digest)
    if record is None:
        raise SignInRequired("signed_out")
    now = state.clock()
    idle = timedelta(minutes=state.settings.console_idle_minutes)
    if record.operator.disabled or now >= record.expires_at or now - record.last_seen_at > idle:
        await state.db(state.operators.end_session, digest)
        raise SignInRequired("expired")
    if now - record.last_seen_at >= TOUCH_EVERY:
        await state.db(state.operators.touch_session, digest, now)
    return Session(record.operator, record.csrf_token, digest, address_of(request))


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def check_sign_in_token(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    sent = form.get("csrf_token", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden("the sign-in form has expired; reload the page")


async def sign_in(
    state: ConsoleState, name: str, password: str, address: str
) -> tuple[str, Operator]:
    """Check a name and password; on success start a session and return its token.

    Raises :class:`Locked` while the name is locked, :class:`Forbidden` for a wrong name or
    password (after the throttle's delay)."""
    settings = state.settings
    now = state.clock()
    name = name.strip()[:64]
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]
    throttle = await state.db(state.operators.throttle, name)
    if throttle.locked_until is not None and now < throttle.locked_until:
        await _audit_sign_in(state, None, name, "locked", address, now)
        raise Locked("too many failed sign-ins; try again later")
    found = await state.db(state.operators.credentials, name) if name else None
    operator, stored = found if found is not None else (None, None)
    good = await asyncio.to_thread(verify_password, stored, password)
    if not good or operator is None or operator.disabled:
        failed = await state.db(
            lambda: state.operators.record_failure(
                name,
                now,
                lock_after=settings.console_sign_in_lock_after,
                lock_for=timedelta(minutes=settings.console_sign_in_lock_minutes),
                forget_after=timedelta(minutes=settings.console_sign_in_lock_minutes),
            )
        )
        await _audit_sign_in(state, operator, name, "refused", address, now)
        log.info("console sign-in refused name=%r failures=%d", name, failed.failures)
        delay = min(settings.console_sign_in_delay_seconds * failed.failures, 10.0)
        await asyncio.sleep(delay)
        if failed.locked_until is not None:
            raise Locked("too many failed sign-ins; try again later")
        raise Forbidden("wrong name or password")
    assert stored is not None
    if needs_rehash(stored):
        await state.db(state.operators.rehash, operator.id, hash_password(password))
    await state.db(state.operators.clear_failures, name)
    token = secrets.token_urlsafe(32)
    limit = now + timedelta(hours=settings.console_max_hours)
    await state.db(
        state.operators.start_session,
        token_hash(token),
        operator.id,
        secrets.token_urlsafe(32),
        address,
        now,
        limit,
    )
    await _audit_sign_in(state, operator, name, "ok", address, now)
    log.info("console sign-in operator=%s role=%s", operator.name, operator.role.value)
    return token, operator


async def _audit_sign_in(
    state: ConsoleState,
    operator: Operator | None,
    name: str,
    outcome: str,
    address: str,
    now: datetime,
) -> None:
    await state.db(
        state.operators.record_action,
        operator,
        name or "-",
        Action.SIGN_IN,
        None,
        outcome,
        {},
        address,
        now,
    )


def set_session_cookie(response: Response, request: Request, token: str, max_hours: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_hours * 3600,
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=PATH, httponly=True, samesite="lax", secure=secure(request)
    )
