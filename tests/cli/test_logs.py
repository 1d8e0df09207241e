"""Logging off the event loop: lines are formatted by the caller, written by one thread, in
order, once each; ``scanpay serve`` sends uvicorn's lines (access log included) the same way."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scanpay.cli.logs import start_logging


def test_lines_are_written_in_order_once_and_handlers_restored() -> None:
    root = logging.getLogger()
    handlers_before, level_before = root.handlers[:], root.level
    out = io.StringIO()
    stop = start_logging("info", out)
    try:
        log = logging.getLogger("scanpay.test")
        for n in range(200):
            log.info("line %d of %s", n, "many")
        log.debug("not at this level")
        try:
            raise LookupError("boom")
        except LookupError:
            log.exception("failed")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/healthz", "1.1", 200
        )
    finally:
        stop()
    lines = out.getvalue().splitlines()
    assert [line.split(" INFO scanpay.test ")[1] for line in lines[:200]] == [
        f"line {n} of many" for n in range(200)
    ]
    assert not any("not at this level" in line for line in lines)
    assert lines[200].endswith(" ERROR scanpay.test failed")
    assert "LookupError: boom" in out.getvalue()
    assert lines[-1].endswith(' INFO uvicorn.access 127.0.0.1:1 - "GET /healthz HTTP/1.1" 200')
    assert all(line.count(" INFO ") <= 1 for line in lines)  # formatted once, not twice
    assert (root.handlers, root.level) == (handlers_before, level_before)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_logs_its_own_and_uvicorns_lines_through_the_queue(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCANPAY_")},
        "SCANPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "SCANPAY_SHOP_API_KEY": "shop-key-for-tests-0123456789",
        "SCANPAY_WECHAT_BASE_URL": "http://127.0.0.1:9",
        "SCANPAY_APPID": "wx0000000000000001",
        "SCANPAY_MCHID": "1900000001",
        "SCANPAY_API_V2_KEY": "k" * 32,
        "SCANPAY_RECONCILER_ENABLED": "false",
    }
    err = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanpay.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        bad = httpx.post(f"http://127.0.0.1:{port}/notify/v2", content=b"<xml>", timeout=5)
        assert bad.status_code == 400
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        err.close()
    text = (tmp_path / "serve.log").read_text()
    assert " INFO uvicorn.error Application startup complete." in text
    assert '"GET /healthz HTTP/1.1" 200' in text
    assert " WARNING scanpay.web.notify notify v2 refused outcome=malformed" in text
    assert " INFO uvicorn.error Shutting down" in text  # written before the process ended
    assert "k" * 32 not in text
