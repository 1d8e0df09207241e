"""``scanpay demo``: the whole flow on one machine with no configuration.

One process runs two loopback servers: the merchant service (SQLite file, demo shop page,
checkout page) and the WeChat Pay simulator (credentials generated on first run and kept in
the data folder). The service talks to the simulator over real HTTP exactly as it would to
WeChat Pay; the simulator notifies the service over real HTTP. In demo mode the checkout page
links to the simulator's phone page, where a person "scans" and pays.

The demo shop speaks Chinese first (merchant and product names in zh-CN; the pages follow
the browser's language, ``?lang=en`` switches). There is one clock: the service reads the
simulator's (:class:`~scanpay.simulator.clock.SimClock`), so ``POST /sim/clock/advance``
moves both and a QR the simulator has expired is replaced on the open checkout page, as it
would be in real time. ``--payment-window SECONDS`` sets how long one QR can be paid
(``SCANPAY_PAYMENT_WINDOW_SECONDS``, 360 to 7200).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from scanpay.config import Settings
from scanpay.simulator import Simulator
from scanpay.web.app import create_app

log = logging.getLogger("scanpay.demo")
DEMO_MERCHANT = "扫码付演示茶铺"  # the demo's merchant, in Chinese as a real shop's would be
DEMO_PRODUCT = "明前龙井绿茶 250 克"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of both servers")
    parser.add_argument("--port", type=int, default=8080, help="merchant service port")
    parser.add_argument("--simulator-port", type=int, default=8090, help="simulator port")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/demo"),
        help="where the SQLite files and generated credentials live (kept between runs)",
    )
    parser.add_argument(
        "--payment-window",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long one QR code can be paid (360-7200; default 900)",
    )


def _shop_key(data_dir: Path) -> str:
    """The demo shop's API key: generated once, kept in the data folder (mode 0600)."""
    path = data_dir / "shop_api_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def build(
    data_dir: Path,
    host: str,
    port: int,
    simulator_port: int,
    payment_window: int | None = None,
) -> tuple[Simulator, FastAPI]:
    """Create the simulator and the merchant app wired to each other over loopback HTTP,
    sharing the simulator's clock."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sim_url = f"http://{host}:{simulator_port}"
    service_url = f"http://{host}:{port}"
    sim = Simulator.create(data_dir / "simulator", public_url=sim_url, merchant_name=DEMO_MERCHANT)
    creds = sim.credentials
    window = {} if payment_window is None else {"payment_window_seconds": payment_window}
    settings = Settings(
        merchant_name=DEMO_MERCHANT,
        demo_product_name=DEMO_PRODUCT,
        **window,  # type: ignore[arg-type]
        database_url=f"sqlite:///{(data_dir / 'scanpay.sqlite3').resolve()}",
        public_base_url=service_url,
        shop_api_key=SecretStr(_shop_key(data_dir)),
        wechat_base_url=sim_url,
        appid=creds.appid,
        mchid=creds.mchid,
        api_v2_key=SecretStr(creds.api_v2_key.reveal()),
        simulator_phone_url=f"{sim_url}/sim/scan",
        webhook_allow_private=True,  # the demo's webhooks go to a shop on this machine
    )
    return sim, create_app(settings, clock=sim.clock.now)


async def serve(
    data_dir: Path, host: str, port: int, simulator_port: int, payment_window: int | None = None
) -> None:
    sim, app = build(data_dir, host, port, simulator_port, payment_window)
    servers = [
        uvicorn.Server(uvicorn.Config(asgi, host=host, port=p, log_level="warning", http="h11"))
        for asgi, p in ((app, port), (sim.app, simulator_port))
    ]
    async with sim:
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.05)
        if all(server.started for server in servers):
            print(
                f"scanpay demo is running. Open http://{host}:{port}/ in a browser.\n"
                f"  simulator (WeChat Pay stand-in): http://{host}:{simulator_port}/sim\n"
                f"  data folder: {data_dir}\n"
                "Press Ctrl+C to stop.",
                flush=True,
            )
        await asyncio.gather(*tasks)


def run(args: argparse.Namespace) -> int:
    if args.payment_window is not None and not 360 <= args.payment_window <= 7200:
        print("scanpay demo: --payment-window must be 360 to 7200 seconds", flush=True)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(
        serve(
            args.data_dir.resolve(),
            args.host,
            args.port,
            args.simulator_port,
            args.payment_window,
        )
    )
    return 0
