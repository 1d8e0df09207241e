"""Run a simulator (and a merchant receiver) on loopback ports in background threads."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn

from scanpay.simulator import Simulator
from scanpay.wechat.v2.notify import ACK_SUCCESS

READY_WAIT_SECONDS = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a child process to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_simulator(state_dir: Path | None = None) -> Iterator[tuple[Simulator, str]]:
    """A simulator served by uvicorn on 127.0.0.1 and a free port; yields (sim, base URL)."""
    sim = Simulator.create(state_dir)
    try:
        with serve_asgi(sim.app, "sim-uvicorn", lifespan="on") as url:
            sim.public_url = url
            yield sim, url
    finally:
        sim.close()


@dataclass
class Inbox:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> bytes:
        if not self.arrived.wait(READY_WAIT_SECONDS):
            raise AssertionError("no notification arrived")
        return self.bodies[0]


@contextmanager
def serve_receiver() -> Iterator[tuple[Inbox, str]]:
    """A merchant notify_url (stdlib http.server) that records bodies and acknowledges."""
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            inbox.headers.append(dict(self.headers.items()))
            inbox.bodies.append(self.rfile.read(size))
            inbox.arrived.set()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(ACK_SUCCESS)))
            self.end_headers()
            self.wfile.write(ACK_SUCCESS)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield inbox, f"http://127.0.0.1:{httpd.server_address[1]}/notify"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(READY_WAIT_SECONDS)


@contextmanager
def serve_asgi(
    app: Any, name: str = "asgi-app", *, scheme: str = "http", **options: Any
) -> Iterator[str]:
    """Any ASGI app served by uvicorn on 127.0.0.1 and a free port; yields its base URL.
    ``options`` go to ``uvicorn.Config`` (TLS settings, with ``scheme="https"``)."""
    settings = {"host": "127.0.0.1", "port": 0, "log_level": "warning", "ws": "none", **options}
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started and thread.is_alive():
        ready.wait(0.02)
    if not server.started:
        raise RuntimeError(f"{name} did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(READY_WAIT_SECONDS)
