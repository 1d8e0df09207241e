"""One webhook POST: to the checked address, no redirects, a time limit, a capped read.

The URL's host is resolved and checked (:mod:`scanpay.webhooks.safety`) right before every
request, and the request goes to that address (``Host`` and TLS SNI/certificate check keep
the name), so what was checked is what is connected to. Never raises for the receiver's
behaviour: every outcome is an :class:`Answer` to record.

HTTP/1.1 is spoken with ``h11`` (the protocol state machine httpx itself builds on) over
asyncio streams, and connections are kept alive for reuse per (scheme, checked address,
port, name): a reused connection goes to the address just checked, so keep-alive does not
weaken the rebinding rule. A connection whose answer was cut at the read cap, timed out,
failed or was asked to close is closed, never reused; one idle for :data:`IDLE_SECONDS` is
dropped. If a reused connection turns out closed by the receiver before any answer byte
(the keep-alive race), the request is sent once more on a new connection — the receiver
deduplicates by ``webhook-id`` anyway. Compared with httpx this costs a delivery a fraction
of the CPU (docs/webhooks.md, "Sending").
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Final

import h11

from scanpay.webhooks.safety import IPAddress, Target, UnsafeUrlError, parse_url, resolve_public

TIMEOUT_SECONDS: Final = 15.0
READ_CAP: Final = 4096  # bytes of the answer read (the first 256 are kept)
KEPT: Final = 256
USER_AGENT: Final = "scanpay-webhooks/1"
IDLE_SECONDS: Final = 4.0  # below common servers' keep-alive timeouts (uvicorn: 5 s)
IDLE_PER_TARGET: Final = 32  # idle connections kept per target
MAX_HEAD: Final = 16384  # bytes of status line and headers accepted

PoolKey = tuple[str, str, int, str]  # scheme, address, port, name


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


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < IDLE_SECONDS
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    async def exchange(
        self, target: Target, headers: list[tuple[str, str]], body: bytes, reused: bool
    ) -> tuple[int, str, str | None, bool]:
        """Send the POST, read the answer up to the cap; returns (status, excerpt,
        Retry-After, whether the connection may be reused)."""
        http = self.http
        request = h11.Request(method="POST", target=target.path, headers=headers)
        self.writer.write(http.send(request) + http.send(h11.Data(data=body))
                          + http.send(h11.EndOfMessage()))  # fmt: skip
        await self.writer.drain()
        status: int | None = None
        retry_after: str | None = None
        read = bytearray()
        received = False
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                chunk = await self.reader.read(READ_CAP)
                if not chunk and reused and not received:
                    raise _Stale
                received = True
                http.receive_data(chunk)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"retry-after":
                        retry_after = value.decode("latin-1")
                continue
            if isinstance(event, h11.Data):
                read += event.data
                if len(read) >= READ_CAP:  # the rest is not read: the connection goes
                    break
                continue
            break  # EndOfMessage (or ConnectionClosed)
        if status is None:  # not expected: h11 yields the Response before anything else
            raise EOFError
        excerpt = bytes(read[:KEPT]).decode("utf-8", "replace")
        reusable = http.our_state is h11.DONE and http.their_state is h11.DONE
        if reusable:
            http.start_next_cycle()
        return status, excerpt, retry_after, reusable


class Sender:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = TIMEOUT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._ssl = ssl_context
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._swept = time.monotonic()
        self.opened = 0  # connections opened so far (tests, benchmarks)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:  # the system's trust store, hostname checked
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = parse_url(url)
            address = await resolve_public(target, allow_private=self.allow_private)
        except UnsafeUrlError as exc:
            return Answer(None, took(), "", exc.message)
        send = [
            *headers.items(),
            ("Host", target.host_header),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", USER_AGENT),
        ]
        key = (target.scheme, str(address), target.port, target.host)
        try:
            async with asyncio.timeout(self.timeout):
                status, excerpt, retry_after = await self._send(key, target, address, send, body)
        except TimeoutError:
            return Answer(None, took(), "", "timed out")
        except (OSError, EOFError, h11.ProtocolError) as exc:  # ssl.SSLError is an OSError
            return Answer(None, took(), "", f"no answer: {type(exc).__name__}")
        return Answer(status, took(), excerpt, None, retry_after)

    async def _send(
        self,
        key: PoolKey,
        target: Target,
        address: IPAddress,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> tuple[int, str, str | None]:
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._use(key, conn, target, headers, body, reused=True)
            except _Stale:
                pass  # closed by the receiver while idle: once more, on a new connection
            except (OSError, EOFError) as exc:
                if not isinstance(exc, ConnectionError):
                    raise
        conn = await self._open(target, address)
        return await self._use(key, conn, target, headers, body, reused=False)

    async def _use(
        self,
        key: PoolKey,
        conn: _Connection,
        target: Target,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        reused: bool,
    ) -> tuple[int, str, str | None]:
        keep = False
        try:
            status, excerpt, retry_after, keep = await conn.exchange(target, headers, body, reused)
        finally:
            if keep:
                self._give_back(key, conn)
            else:
                conn.close()
        return status, excerpt, retry_after

    async def _open(self, target: Target, address: IPAddress) -> _Connection:
        tls = target.scheme == "https"
        reader, writer = await asyncio.open_connection(
            str(address),
            target.port,
            ssl=self._tls() if tls else None,
            server_hostname=target.host if tls else None,  # SNI and the name checked
            limit=MAX_HEAD,
        )
        self.opened += 1
        return _Connection(reader, writer)

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
