"""``scanpay listen`` against a real ``scanpay serve`` (subprocess, SQLite file) wired to the
simulator: it waits for a service that is not up yet, rides out one killed under it, and
forwards what was paid meanwhile; what asking again cannot mend (a wrong key, a server that
is not scanpay) ends it at once with the reason."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, ClassVar

import httpx
import pytest

from tests.simulator.live import free_port, serve_simulator
from tests.web.test_crash import SHOP_KEY, create_order, running_service
from tests.webhooks.receiver import check_signed, serve_receiver

CLI = [sys.executable, "-m", "scanpay.cli.main", "listen"]


class Lines:
    """A child's output, read line by line in a thread (so a test can wait for one)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, within: float = 60.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in {self.lines}")


@contextmanager
def listening(*args: str) -> Iterator[tuple[subprocess.Popen[str], Lines, Lines]]:
    child = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stderr is not None
    try:
        yield child, Lines(child.stdout), Lines(child.stderr)
    finally:
        if child.poll() is None:
            child.terminate()
        child.wait(10)
        child.stdout.close()
        child.stderr.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_listen_waits_for_the_service_and_rides_out_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with serve_receiver() as receiver:
        forward = ["--forward-to", receiver.url, "--service", f"http://127.0.0.1:{port}",
                   "--api-key", SHOP_KEY, "--events", "order.paid", "--from-start",
                   "--max-events", "2", "--poll", "0.2"]  # fmt: skip
        with listening(*forward) as (child, out, err):
            # nothing listens on the port yet: it says so, and asks again
            waiting = err.wait_for("did not answer (ConnectError); trying again in 0.5 s")
            assert SHOP_KEY not in waiting
            with (
                serve_simulator() as (sim, sim_url),
                running_service(tmp_path, sim_url, sim.credentials, port=port) as svc,
            ):
                ready = out.wait_for("Ready! Your webhook signing secret is whsec_")
                secret = ready.split(" is ", 1)[1].split(" ", 1)[0]
                first = create_order(svc, "listen-1", 101)
                paid = httpx.post(f"{sim_url}/sim/pay", json={"code_url": first["code_url"]})
                assert paid.status_code == 200, paid.text
                out.wait_for("--> order.paid [")
                svc.kill()  # under it: it carries on asking
                err.wait_for("did not answer (ConnectError)", within=30)
                svc.start()
                again = create_order(svc, "listen-2", 102)
                paid = httpx.post(f"{sim_url}/sim/pay", json={"code_url": again["code_url"]})
                assert paid.status_code == 200, paid.text
                assert child.wait(60) == 0  # two forwarded: --max-events 2
        received = receiver.wait_for(2)
        check_signed(received, secret)
        assert [r.json["data"]["id"] for r in received] == [first["id"], again["id"]]
        assert all(r.json["type"] == "order.paid" for r in received)
        forwarded = [line for line in out.lines if "--> order.paid" in line]
        assert len(forwarded) == 2
        assert all(line.endswith(")") and "<-- 200 (" in line for line in forwarded)


class _Scripted(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, str, bytes]]] = []

    def do_GET(self) -> None:
        status, kind, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def scripted(*answers: tuple[int, str, bytes]) -> Iterator[str]:
    """A server that is not scanpay (or a scanpay answering an error), on a loopback port:
    it answers GETs with ``answers`` in turn, the last one for good."""
    handler = type("Handler", (_Scripted,), {"answers": list(answers)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


JSON = "application/json"
HTML = "text/html"


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        # a 5xx twice (asked again, pausing longer each time), then a key the service refuses
        (
            [(503, JSON, b'{"error":"busy"}'), (502, HTML, b"<h1>Bad gateway</h1>"),
             (401, JSON, b'{"error":{"code":"unauthorized"}}')],
            ["did not answer (503); trying again in 0.5 s",
             "did not answer (502); trying again in 1 s",
             "the service answered 401"],
        ),
        # a web server that is not scanpay: its 200 is not a page of events
        ([(200, HTML, b"<html>hello</html>")], ["is not a scanpay service"]),
        ([(200, JSON, b'{"items": "x", "next_cursor": 1}')], ["is not a scanpay service"]),
        ([(200, JSON, b'["not", "a", "page"]')], ["is not a scanpay service"]),
    ],
    ids=["5xx-then-401", "html", "items-not-a-list", "json-list"],
)  # fmt: skip
def test_listen_ends_on_what_asking_again_cannot_mend(
    answers: list[tuple[int, str, bytes]], said: list[str]
) -> None:
    with scripted(*answers) as url:
        done = subprocess.run(
            [*CLI, "--forward-to", "http://127.0.0.1:9/hook", "--service", url,
             "--api-key", "a-secret-shop-key-123"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0
    assert "Ready!" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(said), lines
    for line, text in zip(lines, said, strict=True):
        assert text in line, (line, text)
        assert "a-secret-shop-key-123" not in line
    assert "Traceback" not in done.stderr
