"""Fixtures for the browser tests: a real `scanpay demo` process and headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from scanpay.simulator.credentials import MerchantCredentials
from tests.simulator.live import free_port

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@dataclass(frozen=True)
class Demo:
    shop_url: str
    simulator_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@contextmanager
def run_demo(tmp_path: Path, *extra_args: str, env: dict[str, str] | None = None) -> Iterator[Demo]:
    """A `scanpay demo` process on free ports (``extra_args`` and ``env`` added), stopped after."""
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
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
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


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with run_demo(tmp_path) as running:
        yield running


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


@dataclass(frozen=True)
class ClockedShop:
    """The service and the simulator served on loopback ports from a background thread,
    sharing one advanceable clock (real time plus an offset; POST /sim/clock/advance)."""

    shop_url: str
    simulator_url: str
    app: Any  # the service's FastAPI app (``app.state.scanpay`` holds its parts)
    credentials: MerchantCredentials

    def advance(self, seconds: float) -> None:
        response = httpx.post(
            f"{self.simulator_url}/sim/clock/advance", json={"seconds": seconds}, timeout=10
        )
        response.raise_for_status()


@contextmanager
def serve_clocked_shop(
    folder: Path,
    shop_key: str,
    *,
    wire: Callable[[MerchantCredentials], httpx.AsyncBaseTransport] | None = None,
    uvicorn_options: Mapping[str, Any] = MappingProxyType({"log_level": "warning"}),
    **settings: Any,
) -> Iterator[ClockedShop]:
    """A :class:`ClockedShop` on a SQLite file in ``folder``, stopped on leaving. ``settings``
    are added to the service's; ``wire`` makes its transport to the simulator."""
    # imported here: the demo fixture above needs none of it
    import asyncio
    import threading

    import uvicorn
    from pydantic import SecretStr

    from scanpay.simulator import SimClock, Simulator
    from scanpay.web.app import create_app
    from tests.web.conftest import IsolatedSettings

    port, sim_port = free_port(), free_port()
    shop_url, sim_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    clock = SimClock()
    sim = Simulator.create(public_url=sim_url, clock=clock)
    creds = sim.credentials
    service_settings = IsolatedSettings(
        database_url=f"sqlite:///{folder / 'shop.sqlite3'}",
        public_base_url=shop_url,
        shop_api_key=SecretStr(shop_key),
        wechat_base_url=sim_url,
        appid=creds.appid,
        mchid=creds.mchid,
        api_v2_key=SecretStr(creds.api_v2_key.reveal()),
        simulator_phone_url=f"{sim_url}/sim/scan",
        **settings,
    )
    transport = wire(creds) if wire is not None else None
    app = create_app(service_settings, transport, clock=clock.now)
    servers = [
        uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=p, **uvicorn_options))
        for asgi, p in ((app, port), (sim.app, sim_port))
    ]

    async def serve() -> None:
        async with sim:
            await asyncio.gather(*(server.serve() for server in servers))

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not all(server.started for server in servers):
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the clocked shop did not start")
        time.sleep(0.05)
    try:
        yield ClockedShop(shop_url, sim_url, app, creds)
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=15)
        sim.close()


@pytest.fixture
def clocked_shop(tmp_path: Path) -> Iterator[ClockedShop]:
    with serve_clocked_shop(
        tmp_path, "shop-key-for-browser-tests-0123", reconciler_poll_seconds=0.2
    ) as shop:
        yield shop
