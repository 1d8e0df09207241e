"""``ScanpayApp``: the FastAPI application, with a short path for WeChat Pay's notifications.

A ``POST`` to one of the notification paths goes straight to its endpoint, wrapped only in what
it needs: the 500 guard (Starlette's ``ServerErrorMiddleware``), the body cap
(:class:`~scanpay.web.limits.BodyLimit`) and the application's own exception handlers (a
:class:`~scanpay.errors.ScanpayError` gets the same JSON answer as anywhere else). FastAPI's
middleware stack and router are not entered: the endpoints read the raw body and headers
themselves, and the notification is the service's most frequent request. Every other request,
and any other method on those paths (405 as usual), takes FastAPI's ordinary way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from scanpay.web.limits import BodyLimit
from scanpay.wechat.v2.notify import ack_failure

Endpoint = Callable[[Request], Any]


def _xml_server_error(_request: Request, _exc: Exception) -> Response:
    return Response(ack_failure("internal error"), status_code=500, media_type="text/xml")


class ScanpayApp(FastAPI):
    """FastAPI plus :meth:`add_short_path` (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._short: dict[str, ASGIApp] = {}
        # issue 9: request id, duration metric and access line around every HTTP request
        self.observer: Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]] | None = None

    def add_short_path(self, path: str, endpoint: Endpoint, body_limit: int) -> None:
        """Serve ``POST path`` by ``endpoint`` ahead of the middleware stack. Call after the
        exception handlers are installed."""
        handlers = {
            kind: handler
            for kind, handler in self.exception_handlers.items()
            if isinstance(kind, type)
        }
        inner = request_response(endpoint)

        async def with_handlers(scope: Scope, receive: Receive, send: Send) -> None:
            scope["starlette.exception_handlers"] = (handlers, {})
            await inner(scope, receive, send)

        capped = BodyLimit(with_handlers, limit_for=lambda _path: body_limit)
        # WeChat Pay v2 reads XML, even from a 500 (issue 9)
        handler = _xml_server_error if path.startswith("/notify/v2") else None
        self._short[path] = ServerErrorMiddleware(capped, handler=handler, debug=self.debug)

    @property
    def short_paths(self) -> Mapping[str, ASGIApp]:
        return self._short

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.observer is not None and scope["type"] == "http":
            await self.observer(scope, receive, send, self._dispatch)
            return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            lane = self._short.get(scope["path"])
            if lane is not None:
                scope["app"] = self
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
