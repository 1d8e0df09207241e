"""Rendering console pages: the template environment, the per-request context (language,
operator, CSRF token) and the security headers every console answer carries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from scanpay.domain.operators import Action
from scanpay.web.console.auth import Session
from scanpay.web.console.i18n import COOKIE, negotiate
from scanpay.web.console.state import ConsoleState

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )
    env.filters["yuan"] = yuan
    return env


def yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}¥{fen // 100:,}.{fen % 100:02d}"


def page(
    state: ConsoleState,
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render ``template`` in the request's language."""
    locale = negotiate(request)
    translator = state.translators[locale]

    def lang_url(target: str) -> str:
        query = dict(request.query_params)
        query["lang"] = target
        return f"{request.url.path}?{urlencode(query)}"

    def may(action: str) -> bool:
        return session is not None and session.operator.may(Action(action))

    context: Mapping[str, Any] = {
        "_": translator.gettext,
        "ngettext": translator.ngettext,
        "lang": locale,
        "lang_url": lang_url,
        "when": state.local_time,
        "session": session,
        "operator": None if session is None else session.operator,
        "csrf_token": "" if session is None else session.csrf_token,
        "may": may,
        "nav_links": state.nav_links,
        "path": request.url.path,
        "zone": state.settings.console_timezone,
        **values,
    }
    html = state.templates.get_template(template).render(context)
    response = HTMLResponse(html, status_code=status_code, headers=HEADERS)
    if request.query_params.get("lang") and locale != request.cookies.get(COOKIE):
        response.set_cookie(COOKIE, locale, max_age=365 * 86400, path="/", samesite="lax")
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)
