"""Fixtures for the browser tests: a real `scanpay demo` process and headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Demo:
    shop_url: str
    simulator_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port, sim_port = free_port(), free_port()
    log = (tmp_path / "demo.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scanpay.cli.main",
            "demo",
            "--port",
            str(port),
            "--simulator-port",
            str(sim_port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    shop_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            log.close()
            pytest.fail("scanpay demo exited:\n" + (tmp_path / "demo.log").read_text())
        try:
            if httpx.get(f"{shop_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("scanpay demo did not come up:\n" + (tmp_path / "demo.log").read_text())
        time.sleep(0.1)
    try:
        yield Demo(shop_url, f"http://127.0.0.1:{sim_port}", tmp_path / "data", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, so it must be closed before any asyncio test of another module runs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("SCANPAY_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium not found: scripts/setup.sh --test installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
