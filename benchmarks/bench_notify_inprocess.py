"""Where a notification's cost goes, without HTTP: the merchant service's ASGI app called
directly, ``--concurrency`` requests at a time, for ``GET /healthz`` and for valid payment
notifications (v2 and v3), with the log lines written (to a file, as ``scanpay serve`` writes
them to its stderr) or not at all. A diagnostic beside ``bench_service.py`` (which is the
issue-5 figure, over HTTP): it isolates the handler, the store and logging from uvicorn.

Run: ``.venv/bin/python benchmarks/bench_notify_inprocess.py`` (about a minute; ``--orders``,
``--api v2 v3``, ``--log on off``). The simulator runs in-process (it only creates the
orders); the database is a SQLite file, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bench_service import SHOP_KEY, Notifications, Placed, Request
from scanpay.config import Settings
from scanpay.simulator import Simulator
from scanpay.web.app import create_app

Scope = dict[str, Any]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # scanpay serve's


class LocalSettings(Settings):
    """Settings from the arguments only (no environment, no .env file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


async def call(app: Callable[..., Any], request: Request) -> int:
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers]
    headers += [(b"host", b"shop.test"), (b"content-length", str(len(request.body)).encode())]
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": request.method, "scheme": "http", "path": request.path,
        "raw_path": request.path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "state": {},
    }  # fmt: skip
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # never: the handler does not read twice
        delivered = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def per_request_ms(
    app: Callable[..., Any], requests: list[Request], concurrency: int
) -> float:
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            status = await call(app, queue.pop())
            if status not in (200, 204):
                raise RuntimeError(f"unexpected status {status}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.perf_counter() - start) / len(requests) * 1e3


async def measure(api: str, orders: int, concurrency: int, folder: Path) -> tuple[float, float]:
    sim = Simulator.create()
    creds = sim.credentials
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{folder / f'shop-{api}.sqlite3'}",
        "public_base_url": "http://shop.test", "shop_api_key": SHOP_KEY,
        "wechat_base_url": "http://wechat.test", "appid": creds.appid, "mchid": creds.mchid,
        "api_v2_key": creds.api_v2_key.reveal(), "reconciler_enabled": False,
    }  # fmt: skip
    if api == "v3":
        public_key = folder / "wechatpay_public_key.pem"
        public_key.write_text(creds.wechatpay_public_key_pem)
        values |= {
            "api_version": "v3", "api_v3_key": creds.api_v3_key.reveal(),
            "merchant_private_key": creds.merchant_private_key_pem.reveal(),
            "merchant_serial_no": creds.merchant_serial_no,
            "wechatpay_public_key_id": creds.wechatpay_public_key_id,
            "wechatpay_public_key_file": public_key,
        }  # fmt: skip
    app = create_app(LocalSettings(**values), wechat_transport=httpx.ASGITransport(app=sim.app))
    shop = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")
    try:
        placed = []
        for _ in range(orders):
            response = await shop.post(
                "/api/orders", json={"amount": 100, "description": "Tea"},
                headers={"Authorization": f"Bearer {SHOP_KEY}"},
            )  # fmt: skip
            body = response.json()
            placed.append(Placed(body["id"], body["out_trade_no"], body["amount"]))
        factory = Notifications(creds, sim.keys)
        notifications = [factory.build(api, order) for order in placed]
        health = [Request("GET", "/healthz")] * orders
        await per_request_ms(app, health[:200], concurrency)  # warm-up
        healthz = await per_request_ms(app, health, concurrency)
        notify = await per_request_ms(app, notifications, concurrency)
    finally:
        await shop.aclose()
        await app.state.scanpay.aclose()
        await sim.stop()
        sim.close()
    return healthz, notify


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--api", nargs="+", default=["v2", "v3"], choices=["v2", "v3"])
    parser.add_argument("--log", nargs="+", default=["on", "off"], choices=["on", "off"])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scanpay-bench-inprocess-"))
    log_file = (folder / "service.log").open("w")
    print(f"# {platform.platform()}, Python {platform.python_version()}; {args.orders} "
          f"requests each, {args.concurrency} at a time; log lines to a file")  # fmt: skip
    print(f"{'api':4} {'log':7} {'healthz ms':>11} {'notify ms':>10} {'ratio':>6}")
    for api in args.api:
        for mode in args.log:
            level = logging.INFO if mode == "on" else logging.WARNING
            logging.basicConfig(level=level, stream=log_file, force=True, format=LOG_FORMAT)
            where = folder / f"{api}-{mode}"
            where.mkdir()
            healthz, notify = asyncio.run(measure(api, args.orders, args.concurrency, where))
            print(f"{api:4} {mode:7} {healthz:11.3f} {notify:10.3f} {healthz / notify:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
