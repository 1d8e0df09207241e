"""One webhook POST: to the checked address, no redirects, a time limit, a capped read.

The URL's host is resolved and checked (:mod:`scanpay.webhooks.safety`) right before the
request, and the request goes to that address (``Host`` and TLS SNI/certificate check keep
the name), so what was checked is what is connected to. Never raises for the receiver's
behaviour: every outcome is an :class:`Answer` to record.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Final

import httpx

# httpcore asks ``import sniffio`` on every request and falls back to asyncio when it is not
# installed; a failed import searches sys.path each time (about a third of a delivery's CPU,
# measured with bench_webhooks). Marking the absent module as absent makes that import fail
# at once, with the same outcome.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

from scanpay.webhooks.safety import UnsafeUrlError, parse_url, resolve_public

TIMEOUT_SECONDS: Final = 15.0
READ_CAP: Final = 4096  # bytes of the answer read (the first 256 are kept)
USER_AGENT: Final = "scanpay-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (see error)
    latency_ms: int
    excerpt: str
    error: str | None = None
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = parse_url(url)
            address = await resolve_public(target, allow_private=self.allow_private)
        except UnsafeUrlError as exc:
            return Answer(None, took(), "", exc.message)
        shown = f"[{address}]" if address.version == 6 else str(address)
        request_url = f"{target.scheme}://{shown}:{target.port}{target.path}"
        send = {
            **headers,
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            request = self._client.build_request(
                "POST", request_url, content=body, headers=send, extensions=extensions
            )
            response = await self._client.send(request, stream=True)
            try:
                read = bytearray()
                async for chunk in response.aiter_raw():
                    read += chunk
                    if len(read) >= READ_CAP:
                        break
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return Answer(None, took(), "", "timed out")
        except httpx.HTTPError as exc:
            return Answer(None, took(), "", f"no answer: {type(exc).__name__}")
        excerpt = bytes(read[:256]).decode("utf-8", "replace")
        return Answer(response.status_code, took(), excerpt, None,
                      response.headers.get("retry-after"))  # fmt: skip
