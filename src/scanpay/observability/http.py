"""One observer around every HTTP request (issue 9): request id, duration metric, log line.

``X-Request-ID`` is taken from the request when it is a short printable token (up to 128
characters of letters, digits and ``-_.:``), made otherwise (32 hex digits); it is put in
:data:`~scanpay.observability.logs.REQUEST_ID` for every log line of the request (WeChat
calls included: they run in the same task) and returned in the answer. When the request
ends: ``http_server_request_duration_seconds`` by route template, method and status, and one
log line (``scanpay.access``: method, route, path, status, duration_ms, client).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from starlette.types import Message, Receive, Scope, Send

from scanpay.observability import metrics
from scanpay.observability.logs import REQUEST_ID

HEADER: Final = b"x-request-id"
_TOKEN: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
access_log = logging.getLogger("scanpay.access")

Serve = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            if _TOKEN.fullmatch(value):
                return bytes(value).decode("ascii")
            break
    return secrets.token_hex(16)


def route_of(scope: Scope, short_paths: Collection[str]) -> str:
    """The route template (never the raw path: ids would make labels unbounded)."""
    path: str = scope.get("path", "")
    if path in short_paths:
        return path
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template or "/"
    if path.startswith("/static/"):
        return "/static"
    return "unmatched"


class RequestObserver:
    """Wraps the app's own dispatch (:class:`scanpay.web.front.ScanpayApp`)."""

    def __init__(self, short_paths: Collection[str]) -> None:
        self.short_paths = short_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send, serve: Serve) -> None:
        request_id = request_id_of(scope)
        token = REQUEST_ID.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                headers.append((HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await serve(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope, self.short_paths)
            method = scope.get("method", "")
            metrics.HTTP_DURATION.labels(route, method, str(status)).observe(elapsed)
            client = scope.get("client")
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "path": scope.get("path", "")[:200],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )
            REQUEST_ID.reset(token)
