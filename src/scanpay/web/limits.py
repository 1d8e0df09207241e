"""A pure ASGI middleware that caps request bodies before any route reads them.

The body is read up to the cap (Content-Length is checked first, chunked bodies are counted)
and handed to the app in one piece; anything larger gets ``413`` and never reaches a route.
The 413 is JSON, on ``/notify/v2*`` WeChat Pay's XML (``FAIL``), on ``/notify/v3*`` WeChat's
v3 failure answer (``{"code": "FAIL", ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scanpay.wechat.v2.notify import ack_failure
from scanpay.wechat.v3.notify import failure_body


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit, scope["path"])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int, path: str) -> None:
    message = f"request body larger than {limit} bytes"
    if path.startswith("/notify/v2"):
        body, media = ack_failure(message), b"text/xml"
    elif path.startswith("/notify/v3"):
        body, media = failure_body(message), b"application/json"
    else:
        payload: dict[str, Any] = {"error": {"code": "BODY_TOO_LARGE", "message": message}}
        body, media = json.dumps(payload).encode(), b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
