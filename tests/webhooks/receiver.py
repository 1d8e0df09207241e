"""A webhook receiver on a loopback port (stdlib http.server in a thread) that records what
arrives and answers from a script; and the check every test applies to what it received:
verified by the ``standardwebhooks`` package from PyPI and by scanpay's own helper."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

from scanpay.webhooks.signing import verify


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    answered: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    # answers to give, in order: (status, extra headers); then 200
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds before each answer (a slow shop)
    arriving: int = 0  # requests whose body was read (answered or not yet)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def answer(self) -> tuple[int, dict[str, str]]:
        return self.script.pop(0) if self.script else (200, {})

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")
                self.changed.wait(left)
            return list(self.received)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]


@contextmanager
def serve_receiver(path: str = "/webhooks") -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.arriving += 1
            if receiver.delay:
                time.sleep(receiver.delay)
            with receiver.changed:  # kept even if the sender is gone before our answer
                status, extra = receiver.answer()
                receiver.received.append(Received(headers, body, time.monotonic(), status))
                receiver.changed.notify_all()
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the service was killed mid-request (the SIGKILL test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def check_signed(received: Iterable[Received], secret: str) -> None:
    """Every message verifies with the PyPI ``standardwebhooks`` package and with scanpay's
    helper, and the signed id is the body's id."""
    reference = Webhook(secret)
    for message in received:
        payload = reference.verify(message.body, message.headers)
        assert payload["id"] == message.id
        assert verify(secret, message.headers, message.body) == message.id
