"""Throughput of the WeChat Pay simulator: v3 prepay and v3 query requests per second, and
notifications delivered per second to a trivial local receiver.

Run: ``.venv/bin/python benchmarks/bench_simulator.py`` (about a minute) or ``--quick``.

Method:

* the simulator runs as ``scanpay simulator`` in its own process (uvicorn, loopback port,
  state in a temporary directory), exactly as a user starts it;
* requests come from scanpay's own V3Client (public-key mode: every request RSA-signed, every
  answer verified, as a real SDK does) over one httpx connection pool, with ``--concurrency``
  requests in flight; each phase stops after ``--requests`` calls or ``--seconds``, whichever
  comes first; a short warm-up is not counted;
* notifications: orders are paid while a ``delay_notifications`` fault holds every first
  attempt back one simulated hour, then the faults are cleared and ``POST /sim/clock/advance``
  moves the clock by that hour; the call returns once every due notification has been
  delivered and answered, and that call's duration is what is measured. The receiver is a
  minimal ASGI app in this process that acknowledges everything. v2 notifications are signed
  when queued (MD5), v3 ones are RSA-signed per delivery attempt;
* the driver, the simulator and the receiver share the machine, so the figures are those of
  the whole loop on this machine, not of the simulator alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.simulator import credentials as credential_store
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.wechat.keys import TrustStore, load_public_key
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v3.transactions import NativeOrder

ROOT = Path(__file__).resolve().parent.parent
SCANPAY = Path(sys.executable).with_name("scanpay")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_simulator(state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(SCANPAY), "simulator", "--state-dir", str(state_dir), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, cwd=ROOT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/sim/clock", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the simulator did not start")


def v3_client(creds: MerchantCredentials, base_url: str, concurrency: int) -> V3Client:
    trust = TrustStore()
    trust.add_public_key(
        creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
    )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return V3Client(
        creds.mchid,
        creds.merchant_serial_no,
        creds.merchant_private_key_pem.reveal(),
        creds.api_v3_key,
        trust,
        base_url=base_url,
        transport=httpx.AsyncHTTPTransport(limits=limits),
    )


def native(creds: MerchantCredentials, number: str, notify_url: str) -> NativeOrder:
    return NativeOrder(
        appid=creds.appid,
        mchid=creds.mchid,
        description="bench",
        out_trade_no=number,
        notify_url=notify_url,
        total=1,
    )


async def run_phase(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    requests: int,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def worker() -> None:
        for index in counter:
            if time.perf_counter() > deadline:
                return
            began = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "phase": name,
        "requests": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


class Receiver:
    """A merchant notify_url that acknowledges everything (v2 XML SUCCESS, v3 204)."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        self.count += 1
        if scope["path"].endswith("/v2"):
            body = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        else:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


async def notifications_phase(
    creds: MerchantCredentials,
    base_url: str,
    receiver: Receiver,
    receiver_url: str,
    count: int,
    api: str,
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as control:
        await control.post("/sim/faults", json={"faults": {"delay_notifications": 3600}})
        prefix = f"n{api}-{time.time_ns() % 10**9}-"
        if api == "v2":
            async with V2Client(creds.v2_merchant(), base_url=base_url) as v2:
                for i in range(count):
                    await v2.create_native_order(
                        UnifiedOrder(
                            out_trade_no=f"{prefix}{i}",
                            body="bench",
                            total_fee=1,
                            notify_url=f"{receiver_url}/v2",
                            product_id="p",
                        )
                    )
        else:
            async with v3_client(creds, base_url, 4) as v3:
                for i in range(count):
                    await v3.create_native_order(
                        native(creds, f"{prefix}{i}", f"{receiver_url}/v3")
                    )
        for i in range(count):
            paid = await control.post("/sim/pay", json={"out_trade_no": f"{prefix}{i}"})
            assert paid.json()["paid"], paid.text
        await control.post("/sim/notifications/deliver")  # every first attempt is held back
        await control.delete("/sim/faults")
        before = receiver.count
        began = time.perf_counter()
        await control.post("/sim/clock/advance", json={"seconds": 3600})
        elapsed = time.perf_counter() - began
        delivered = receiver.count - before
    if delivered != count:
        raise RuntimeError(f"{delivered} of {count} notifications arrived")
    return {
        "phase": f"notifications {api}",
        "requests": delivered,
        "seconds": elapsed,
        "per_second": delivered / elapsed,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-sim-") as tmp:
        state_dir = Path(tmp) / "sim"
        port = free_port()
        process = start_simulator(state_dir, port)
        base_url = f"http://127.0.0.1:{port}"
        receiver = Receiver()
        receiver_port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                receiver, host="127.0.0.1", port=receiver_port, log_level="warning", lifespan="off"
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            creds, _ = credential_store.load(state_dir)
            receiver_url = f"http://127.0.0.1:{receiver_port}"
            prefix = f"b{time.time_ns() % 10**9}-"
            async with v3_client(creds, base_url, args.concurrency) as client:

                async def prepay(i: int) -> None:
                    await client.create_native_order(native(creds, f"{prefix}{i}", receiver_url))

                async def query(i: int) -> None:
                    await client.query_by_out_trade_no(f"{prefix}{i % created}")

                common = {"concurrency": args.concurrency, "seconds": args.seconds}
                await run_phase("warm-up", prepay, requests=50, **common)
                prefix = prefix + "x"
                results.append(
                    await run_phase("v3 prepay", prepay, requests=args.requests, **common)
                )
                created = results[-1]["requests"]
                results.append(await run_phase("v3 query", query, requests=args.requests, **common))
            for api in ("v2", "v3"):
                results.append(
                    await notifications_phase(
                        creds, base_url, receiver, receiver_url, args.notifications, api
                    )
                )
        finally:
            server.should_exit = True
            await serving
            process.terminate()
            process.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per API phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per API phase")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--notifications", type=int, default=500, help="per API version")
    parser.add_argument("--quick", action="store_true", help="a smoke run (small counts)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds, args.notifications = 200, 5.0, 50
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()};"
        f" concurrency {args.concurrency}"
    )
    for row in asyncio.run(main_async(args)):
        latency = ""
        if "p50_ms" in row:
            latency = f"  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms"
        print(
            f"{row['phase']:<18} {row['requests']:>6} in {row['seconds']:6.2f} s"
            f"  {row['per_second']:8.1f} /s{latency}"
        )


if __name__ == "__main__":
    main()
