"""One webhook POST: to the checked address, no redirects, a time limit, a capped read.

The URL's host is resolved and checked (:mod:`scanpay.webhooks.safety`) right before every
request, and the request goes to that address (``Host`` and TLS SNI/certificate check keep
the name), so what was checked is what is connected to. Never raises for the receiver's
behaviour: every outcome is an :class:`Answer` to record.

The request is written as bytes (its parts are checked: the URL by
:func:`~scanpay.webhooks.safety.parse_url`, header values here) and the answer is parsed by
``httptools`` (the llhttp parser uvicorn uses), in an :class:`asyncio.Protocol`: the h11 and
asyncio-streams sender this replaces spent three to four times the CPU per delivery
(docs/webhooks.md, "Sending"). Connections are kept alive for reuse per (scheme, checked
address, port, name): a reused connection goes to the address just checked, so keep-alive
does not weaken the rebinding rule. A connection whose answer was cut at the read cap, timed
out, failed, was asked to close or sent bytes nobody asked for is closed, never reused; one
idle for :data:`IDLE_SECONDS` is dropped. If a reused connection turns out closed by the
receiver before any answer byte (the keep-alive race), the request is sent once more on a
new connection — the receiver deduplicates by ``webhook-id`` anyway.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import httptools

from scanpay.webhooks.safety import IPAddress, Target, UnsafeUrlError, parse_url, resolve_public

TIMEOUT_SECONDS: Final = 15.0
READ_CAP: Final = 4096  # bytes of the answer's body read (the first 256 are kept)
KEPT: Final = 256
USER_AGENT: Final = "scanpay-webhooks/1"
IDLE_SECONDS: Final = 4.0  # below common servers' keep-alive timeouts (uvicorn: 5 s)
IDLE_PER_TARGET: Final = 32  # idle connections kept per target
MAX_HEAD: Final = 16384  # bytes of status line and headers accepted
RESOLVED_SECONDS: Final = 10.0  # a checked address is used this long before a new look-up
RESOLVED_KEPT: Final = 1024  # hosts kept

PoolKey = tuple[str, str, int, str]  # scheme, address, port, name
_TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)


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


class _Stale(Exception):
    """A reused connection was found closed before any answer byte arrived."""


class BadAnswer(Exception):
    """The receiver's bytes are not an HTTP/1.1 answer (or its head is too large)."""


def request_bytes(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The POST as bytes. Header values must be printable ASCII (what :mod:`signing` makes
    is); the target's parts were checked by ``parse_url`` (no spaces or control
    characters, ASCII only)."""
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"User-Agent: {USER_AGENT}",
    ]
    for name, value in headers.items():
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"not a header name: {name!r}")
        if not (value.isascii() and value.isprintable()):
            raise ValueError(f"header {name} has characters HTTP/1.1 does not carry")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection; :meth:`exchange` sends a request and waits for
    its answer, which ``httptools`` parses as its bytes arrive (the callbacks below)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._reused = False
        self._reset()

    def _reset(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None
        self.body = bytearray()
        self.head_bytes = 0
        self.headers_done = False
        self.complete = False
        self.received = False  # a byte of this exchange's answer came
        self.extra = False  # bytes after the answer: the connection is not reused
        self.keep_alive = False  # the answer allows reuse (HTTP/1.1, no "Connection: close")

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # nobody asked: drop the connection
            self.extra = True
            self.close()
            return
        self.received = True
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._settle(BadAnswer())
            return
        if not self.headers_done and self.head_bytes > MAX_HEAD:
            self._settle(BadAnswer())
        elif self.complete or len(self.body) >= READ_CAP:
            self._settle(None)

    def eof_received(self) -> bool:
        return False  # close our side too (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done:  # an answer ended by the close (no length given, or cut)
            self._settle(None)
        elif not self.received:
            self._settle(_Stale() if self._reused else exc or EOFError())
        else:
            self._settle(EOFError())

    # ---- httptools callbacks ----
    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request
            self.extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after" and not self.complete:
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.complete:  # the head of a second answer: ignored (extra is set)
            return
        if status < 200:  # informational (100 Continue...): the answer's head follows
            self.retry_after = None
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # (reset once the answer ends)

    def on_body(self, body: bytes) -> None:
        room = READ_CAP - len(self.body)
        if room > 0 and not self.complete:
            self.body += body[:room]

    def on_message_complete(self) -> None:
        if self.headers_done:  # not an informational answer's end
            self.complete = True

    # ---- use ----
    def _settle(self, error: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def usable(self, now: float) -> bool:
        return now - self.idle_since < IDLE_SECONDS and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, reused: bool) -> tuple[int, str, str | None, bool]:
        """Send ``request``, read the answer up to the cap; returns (status, excerpt,
        Retry-After, whether the connection may be reused)."""
        assert self.transport is not None
        self._reset()
        self._reused = reused
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            await self._waiter
        finally:
            self._waiter = None
        if self.status is None:  # not expected: settled without an answer's head
            raise EOFError
        reusable = self.complete and not self.extra and not self.closed and self.keep_alive
        excerpt = bytes(self.body[:KEPT]).decode("utf-8", "replace")
        return self.status, excerpt, self.retry_after, reusable


class Sender:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = TIMEOUT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        resolved_seconds: float = RESOLVED_SECONDS,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._ssl = ssl_context
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._swept = time.monotonic()
        self.opened = 0  # connections opened so far (tests, benchmarks)
        self.resolved_seconds = resolved_seconds
        self._resolved: dict[tuple[str, int], tuple[float, IPAddress]] = {}
        self._looking: dict[tuple[str, int], asyncio.Future[IPAddress]] = {}
        self.lookups = 0  # look-ups that passed the check so far (tests)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:  # the system's trust store, hostname checked
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = parse_url(url)
            address = await self._address(target)
        except UnsafeUrlError as exc:
            return Answer(None, took(), "", exc.message)
        request = request_bytes(target, headers, body)
        key = (target.scheme, str(address), target.port, target.host)
        try:
            async with asyncio.timeout(self.timeout):
                status, excerpt, retry_after = await self._send(key, target, address, request)
        except TimeoutError:
            return Answer(None, took(), "", "timed out")
        except BadAnswer:
            return Answer(None, took(), "", "no answer: not an HTTP/1.1 answer")
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            return Answer(None, took(), "", f"no answer: {type(exc).__name__}")
        return Answer(status, took(), excerpt, None, retry_after)

    async def _address(self, target: Target) -> IPAddress:
        """The checked address to connect to for ``target``: resolved and checked again once
        the last check is ``resolved_seconds`` old (a name is otherwise looked up before
        every delivery: a DNS query and a trip through the thread pool each). Only
        addresses that passed the check are kept, and they are what is connected to, so
        the rebinding rule holds; a refusal is not kept (asked again next time). Deliveries
        to one host that need its address at the same moment share one look-up (when the
        kept one runs out under load, not one each)."""
        key = (target.host, target.port)
        kept = self._resolved.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.resolved_seconds:
            return kept[1]
        looking = self._looking.get(key)
        if looking is None:
            looking = asyncio.ensure_future(self._look_up(target, key))
            self._looking[key] = looking
            looking.add_done_callback(lambda done: self._looked_up(key, done))
        # (shielded: a delivery that times out leaves the look-up to the others waiting)
        return await asyncio.shield(looking)

    async def _look_up(self, target: Target, key: tuple[str, int]) -> IPAddress:
        address = await resolve_public(target, allow_private=self.allow_private)
        self.lookups += 1
        if len(self._resolved) >= RESOLVED_KEPT:
            self._resolved.clear()
        self._resolved[key] = (time.monotonic(), address)
        return address

    def _looked_up(self, key: tuple[str, int], done: asyncio.Future[IPAddress]) -> None:
        self._looking.pop(key, None)
        if not done.cancelled():
            done.exception()  # (retrieved: no "never retrieved" warning if no one waits)

    async def _send(
        self, key: PoolKey, target: Target, address: IPAddress, request: bytes
    ) -> tuple[int, str, str | None]:
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._use(key, conn, request, reused=True)
            except _Stale:
                pass  # closed by the receiver while idle: once more, on a new connection
            except (OSError, EOFError) as exc:
                if not isinstance(exc, ConnectionError):
                    raise
        conn = await self._open(target, address)
        return await self._use(key, conn, request, reused=False)

    async def _use(
        self, key: PoolKey, conn: _Connection, request: bytes, *, reused: bool
    ) -> tuple[int, str, str | None]:
        keep = False
        try:
            status, excerpt, retry_after, keep = await conn.exchange(request, reused)
        finally:
            if keep:
                self._give_back(key, conn)
            else:
                conn.close()
        return status, excerpt, retry_after

    async def _open(self, target: Target, address: IPAddress) -> _Connection:
        tls = target.scheme == "https"
        _transport, conn = await asyncio.get_running_loop().create_connection(
            _Connection,
            str(address),
            target.port,
            ssl=self._tls() if tls else None,
            server_hostname=target.host if tls else None,  # SNI and the name checked
        )
        self.opened += 1
        return conn

    def _take(self, key: PoolKey) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def _give_back(self, key: PoolKey, conn: _Connection) -> None:
        now = time.monotonic()
        conn.idle_since = now
        idle = self._idle.setdefault(key, [])
        if len(idle) < IDLE_PER_TARGET:
            idle.append(conn)
        else:
            conn.close()
        if now - self._swept > IDLE_SECONDS:  # close what has idled too long anywhere
            self._swept = now
            for other, connections in list(self._idle.items()):
                for c in connections:
                    if not c.usable(now):
                        c.close()
                kept = [c for c in connections if c.usable(now)]
                if kept:
                    self._idle[other] = kept
                else:
                    del self._idle[other]
