"""Webhook delivery: latency from a payment notification to the shop's receiver, and
deliveries per second to 8 endpoints against the notification rate of the same run.

Run: ``.venv/bin/python benchmarks/bench_webhooks.py`` (about a minute) or ``--quick``.

Method (issue 11's benchmark; loopback only):

* ``scanpay serve`` in its own process (SQLite file, reconciler off, webhook worker on with
  ``SCANPAY_WEBHOOK_ALLOW_PRIVATE=true``) and ``scanpay simulator`` for order creation, as
  in ``bench_service.py``, whose notification builder and HTTP/1.1 driver are reused;
* receivers: one asyncio HTTP/1.1 server in this process per endpoint, answering 200 at once
  and noting when each ``order.paid`` arrives (``time.perf_counter``);
* *latency* (low load): one endpoint; ``--latency-orders`` notifications one at a time,
  each after the previous order's webhook arrived; the clock starts when the notification's
  acknowledgement is read (accepted) and stops when the receiver has read the webhook's
  body (a webhook may even arrive before the acknowledgement: then 0). Also shown: from the
  notification's first byte sent;
* *throughput*: 8 endpoints (created through ``POST /api/webhook-endpoints``);
  ``--orders`` notifications over ``--concurrency`` connections as fast as the service
  takes them; *notify/s* is the notifications over the time to the last acknowledgement,
  *deliveries/s* all deliveries (orders x 8) over the time from the first notification to
  the last delivery, and *lag* how long after the last acknowledgement the last delivery
  arrived. Delivery keeps up when deliveries/s is about 8 x notify/s and the lag is small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench_service import (
    HOST,
    SCANPAY,
    SHOP_KEY,
    Connection,
    Notifications,
    acknowledged,
    create_orders,
    free_port,
    percentile,
    run_rate,
    service_env,
    start,
    stop,
)
from scanpay.simulator import credentials as credential_store


class Receivers:
    """HTTP/1.1 receivers on loopback; ``arrivals[(endpoint, order_id)] = perf_counter``."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[int, str], float] = {}
        self.count = 0
        self.waiters: dict[tuple[int, str], asyncio.Future[float]] = {}
        self.servers: list[asyncio.Server] = []

    async def add(self) -> str:
        index = len(self.servers)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.decode("latin-1").split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    body = await reader.readexactly(length)
                    at = time.perf_counter()
                    event = json.loads(body)
                    if event["type"] == "order.paid":
                        key = (index, event["data"]["id"])
                        self.arrivals.setdefault(key, at)
                        self.count += 1
                        waiter = self.waiters.pop(key, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(at)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, HOST, 0)
        self.servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://{HOST}:{port}/hook"

    async def wait(self, key: tuple[int, str], within: float = 30.0) -> float:
        if key in self.arrivals:
            return self.arrivals[key]
        waiter = self.waiters[key] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(waiter, within)
        except TimeoutError:
            raise RuntimeError(f"webhook for {key} did not arrive") from None

    async def close(self) -> None:
        for server in self.servers:
            server.close()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-webhooks-") as tmp:
        folder = Path(tmp)
        creds, keys = credential_store.load_or_create(folder / "simulator")
        sim_port = free_port()
        sim_url = f"http://{HOST}:{sim_port}"
        sim = start([str(SCANPAY), "simulator", "--state-dir", str(folder / "simulator"),
                     "--port", str(sim_port), "--log-level", "warning"],
                    folder / "simulator.log", f"{sim_url}/sim/clock")  # fmt: skip
        receivers = Receivers()
        try:
            port = free_port()
            base = f"http://{HOST}:{port}"
            env_file = service_env(folder, creds, sim_url, "v2")
            env_file.write_text(
                env_file.read_text()
                + f"SCANPAY_PUBLIC_BASE_URL={base}\nSCANPAY_WEBHOOK_ALLOW_PRIVATE=true\n"
            )
            service = start([str(SCANPAY), "serve", "--host", HOST, "--port", str(port),
                             "--env-file", str(env_file), "--log-level", "warning"],
                            folder / "service.log", f"{base}/healthz")  # fmt: skip
            try:
                await measure(args, base, port, receivers, Notifications(creds, keys))
            finally:
                stop(service)
        finally:
            await receivers.close()
            stop(sim)


async def measure(
    args: argparse.Namespace, base: str, port: int, receivers: Receivers, build: Notifications
) -> None:
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
        for _ in range(8):
            url = await receivers.add()
            answer = await http.post("/api/webhook-endpoints", json={"url": url})
            answer.raise_for_status()
            if len(receivers.servers) == 1:  # latency first, with one endpoint
                await latency(args, base, port, receivers, build)
    await throughput(args, base, port, receivers, build)


async def latency(
    args: argparse.Namespace, base: str, port: int, receivers: Receivers, build: Notifications
) -> None:
    orders = await create_orders(base, args.latency_orders + 20)
    conn = await Connection.open(port)
    from_ack: list[float] = []
    from_send: list[float] = []
    for n, order in enumerate(orders):
        request = build.build("v2", order)
        sent = time.perf_counter()
        status, body = await conn.request(request.method, request.path, request.body,
                                          request.headers)  # fmt: skip
        accepted = time.perf_counter()
        if not acknowledged("v2", status, body):
            raise RuntimeError(f"notification refused: {status} {body!r}")
        arrived = await receivers.wait((0, order.id))
        if n >= 20:  # the first few warm the service up
            from_ack.append(max(0.0, arrived - accepted) * 1000)
            from_send.append((arrived - sent) * 1000)
        await asyncio.sleep(0.02)  # low load: one at a time, a little apart
    await conn.close()
    print(f"latency, notification accepted -> webhook received, 1 endpoint, "
          f"{len(from_ack)} orders one at a time (ms):")  # fmt: skip
    for name, values in (("from accepted", from_ack), ("from sent", from_send)):
        print(f"  {name:<14} p50 {statistics.median(values):6.1f}  p90 "
              f"{percentile(values, 90):6.1f}  p99 {percentile(values, 99):6.1f}  "
              f"max {max(values):6.1f}")  # fmt: skip


async def throughput(
    args: argparse.Namespace, base: str, port: int, receivers: Receivers, build: Notifications
) -> None:
    endpoints = len(receivers.servers)
    orders = await create_orders(base, args.orders)
    requests = [build.build("v2", o) for o in orders]
    before = receivers.count
    began = time.perf_counter()
    _rate, answers = await run_rate(port, requests, args.concurrency, 120.0)
    acked = time.perf_counter()
    if len(answers) != len(requests) or not all(acknowledged("v2", *a) for a in answers):
        raise RuntimeError("not every notification was acknowledged")
    keys = [(e, o.id) for o in orders for e in range(endpoints)]
    last = max([await receivers.wait(key, 120.0) for key in keys])
    delivered = receivers.count - before
    notify_rate = len(orders) / (acked - began)
    delivery_rate = delivered / (last - began)
    print(f"throughput, {len(orders)} notifications over {args.concurrency} connections, "
          f"{endpoints} endpoints:")  # fmt: skip
    print(f"  notify/s {notify_rate:7.0f}   deliveries/s {delivery_rate:7.0f} "
          f"({delivery_rate / endpoints:5.0f} per endpoint)   "
          f"lag after last ack {(last - acked) * 1000:7.0f} ms   "
          f"deliveries {delivered} (duplicates {delivered - len(keys)})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="notifications (throughput)")
    parser.add_argument("--latency-orders", type=int, default=200, help="timed one at a time")
    parser.add_argument("--concurrency", type=int, default=8, help="notification connections")
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.latency_orders = 100, 30
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
