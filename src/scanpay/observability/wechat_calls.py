"""Every call to WeChat Pay measured (issue 9): ``scanpay_wechat_call_duration_seconds`` by
endpoint and result, and one DEBUG line (httpx's own INFO line per call is off, see
:func:`scanpay.observability.logs.configure`).

The endpoint is the path with its ids replaced (``/v3/pay/transactions/out-trade-no/{id}``),
so labels stay bounded; the result is the HTTP status, or the transport error's name.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Final

import httpx

from scanpay.observability import metrics

log = logging.getLogger("scanpay.wechat")
# a path segment after one of these names is an id
_ID_AFTER: Final = frozenset({"out-trade-no", "id", "refunds", "transactions-id"})
_LOOKS_LIKE_ID: Final = re.compile(r"^[0-9A-Za-z_\-]{12,}$")


def endpoint_of(path: str) -> str:
    parts = path.split("/")
    shown: list[str] = []
    for index, part in enumerate(parts):
        after = parts[index - 1] if index else ""
        if after in _ID_AFTER or (index > 2 and _LOOKS_LIKE_ID.match(part) and part != "close"):
            shown.append("{id}")
        else:
            shown.append(part)
    return "/".join(shown)[:100]


class MeteredTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request.url.path)
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            elapsed = time.perf_counter() - started
            metrics.WECHAT_CALLS.labels(endpoint, type(exc).__name__).observe(elapsed)
            log.debug("wechat call failed", extra={"endpoint": endpoint,
                                                   "result": type(exc).__name__})  # fmt: skip
            raise
        elapsed = time.perf_counter() - started
        result = str(response.status_code)
        metrics.WECHAT_CALLS.labels(endpoint, result).observe(elapsed)
        log.debug(
            "wechat call",
            extra={
                "endpoint": endpoint,
                "method": request.method,
                "result": result,
                "duration_ms": round(elapsed * 1000, 2),
                "wechat_request_id": response.headers.get("request-id"),
            },
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument(client: Any) -> None:
    """Measure the calls of a :class:`~scanpay.client.v2.V2Client` or ``V3Client``."""
    http: httpx.AsyncClient = client._http
    current = http._transport
    if not isinstance(current, MeteredTransport):
        http._transport = MeteredTransport(current)
