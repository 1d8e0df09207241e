"""A loopback TCP proxy whose network can be cut: open connections reset, new ones refused.

Chromium's offline emulation does not cut an already open loopback stream, so the browser
talks to the service through this proxy instead, and a test calls :meth:`LoopbackProxy.down`
and :meth:`LoopbackProxy.up`. The proxy notes each HTTP request head it forwards (method,
path, headers) so a test can see what the page asked for, e.g. a stream resumed with
``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from typing import Final

from tests.simulator.live import free_port

HEAD: Final = re.compile(rb"(GET|POST|HEAD|PUT|DELETE) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]


class LoopbackProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.seen: list[Seen] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def up(self) -> None:
        """Listen (again) on the same port."""
        self._run(self._up())

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        self._run(self._down())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def requests(self, path_prefix: str, since: float = 0.0) -> list[Seen]:
        return [s for s in list(self.seen) if s.path.startswith(path_prefix) and s.at >= since]

    async def _up(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _note(self, data: bytes) -> None:
        for match in HEAD.finditer(data):
            headers = {}
            for line in match.group(3).split(b"\r\n"):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            self.seen.append(
                Seen(time.monotonic(), match.group(1).decode(), match.group(2).decode(), headers)
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, inspect: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if inspect:
                        self._note(data)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )
        self._writers.discard(writer)
        self._writers.discard(up_writer)
