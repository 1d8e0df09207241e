"""Errors as pages for people, JSON for programs.

:func:`install` wraps the JSON exception handlers of :mod:`scanpay.web.errors`: a request
from a browser (``Accept`` names ``text/html`` before any JSON type) outside ``/api/`` and
``/notify/`` gets an HTML page in the shopper's language with the cashier's look; everything
else keeps the JSON error body unchanged. The pages:

- 404: an unknown order (``/checkout/<id>``) or an unknown page;
- 502: WeChat Pay refused the order or could not be reached (at Buy, or while a checkout page
  was replacing its QR), with a "try again" button (Buy posts again; a page reloads);
- 500: anything unexpected (the details go to the log, never to the page);
- 400: any other refusal of the request.

The message never carries WeChat's or the exception's text (it could be in another language
or say more than a shopper needs); only the error code, in small print.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scanpay.errors import ApiError, NotFoundError, ScanpayError, TransportError
from scanpay.web import errors, i18n, pages
from scanpay.web.context import get_context

log = logging.getLogger(__name__)
Handler = Callable[[Request, Exception], Awaitable[Response]]
AnyHandler = Callable[[Request, Any], Response | Awaitable[Response]]
N_ = pages.N_

MACHINE_PATHS: Final = ("/api/", "/notify/", "/static/", "/sim/")
PAGES: Final[dict[int, tuple[str, str]]] = {
    404: (N_("Page not found"), N_("There is nothing at this address.")),
    502: (
        N_("WeChat Pay could not take the order"),
        N_("WeChat Pay did not answer or refused the order. No money was taken. Please try again."),
    ),
    500: (
        N_("Something went wrong"),
        N_("The page could not be shown because of an error on our side. No money was taken."),
    ),
    400: (N_("The request could not be handled"), N_("Please go back and try again.")),
}
ORDER_NOT_FOUND: Final = (
    N_("Order not found"),
    N_("There is no order at this address. Check the link, or go back to the shop."),
)


def wants_html(request: Request) -> bool:
    """Whether the client is a browser navigating to a page (not an API client)."""
    path = request.url.path
    if path.startswith(MACHINE_PATHS) or path in ("/api", "/healthz", "/openapi.json"):
        return False
    accept = request.headers.get("accept", "").lower()
    html = accept.find("text/html")
    if html < 0:
        return False
    json_at = min((i for i in (accept.find("application/json"), accept.find("+json")) if i >= 0),
                  default=-1)  # fmt: skip
    return json_at < 0 or html < json_at


def error_page(request: Request, status_code: int, code: str = "") -> Response:
    """The HTML page for ``status_code`` (one of 400, 404, 500, 502)."""
    kind = status_code if status_code in PAGES else 400
    title, message = PAGES[kind]
    if kind == 404 and request.url.path.startswith("/checkout/"):
        title, message = ORDER_NOT_FOUND
    retry = ""
    if kind in (500, 502):
        retry = "buy" if request.url.path == "/shop/buy" else "reload"
    locale = i18n.request_locale(request, get_context(request).settings.default_locale).locale
    return pages.page(
        request,
        "error.html",
        status_code=status_code,
        error_status=status_code,
        locale=locale,
        title=pages.translate(locale, title),
        message=pages.translate(locale, message),
        retry=retry if request.method in ("GET", "POST") else "",
        retry_url=request.url.path,
        code=code,
    )


def _status_of(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApiError | TransportError):
        return 502, exc.code
    if isinstance(exc, NotFoundError):
        return 404, ""
    if isinstance(exc, ScanpayError):
        return errors.status_for(exc), exc.code
    if isinstance(exc, HTTPException):
        return exc.status_code, ""
    return 400, ""


def html_or(json_handler: AnyHandler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        if not wants_html(request):
            answer = json_handler(request, exc)
            return answer if isinstance(answer, Response) else await answer
        status, code = _status_of(exc)
        if status >= 500:
            log.warning("%s %s failed: %s (page shown)", request.method, request.url.path, code)
        return error_page(request, status, code)

    return handler


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything not handled elsewhere: 500 (logged by the server; no detail to the client)."""
    if wants_html(request):
        try:
            return error_page(request, 500)
        except Exception:  # the page itself failed: fall back to the plain answer
            log.exception("the 500 page could not be rendered")
    return JSONResponse(errors.error_body("INTERNAL", "internal error"), 500)


def install(app: FastAPI) -> None:
    """Call after :func:`scanpay.web.errors.install` (it wraps those handlers)."""
    for kind, handler in list(app.exception_handlers.items()):
        app.exception_handlers[kind] = html_or(handler)
    app.exception_handlers[500] = server_error
