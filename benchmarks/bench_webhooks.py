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
  With ``--rate R`` the notifications are sent at R per second instead (a steady load
  rather than a burst), and each of the 8 x orders deliveries is timed from its
  notification's acknowledgement: delivery keeps pace at R when those waits stay at
  milliseconds to the end of the run (a backlog would make them grow);
  *CPU ms*: the service process's CPU time (all threads, ``/proc/PID/task/*/schedstat``) from
  the first notification to the last delivery, per notification and per delivery;
* ``--worker-cost``: what the webhook worker costs a notification. ``--rounds`` rounds, each
  starting three fresh services (fresh databases) one after the other: worker *off*
  (``SCANPAY_WEBHOOKS_ENABLED=false``), *on* with no endpoint, and *on* with one endpoint
  (``hook``); each takes ``--orders`` notifications over ``--concurrency`` connections and the
  service CPU is counted until its worker is done (every event published, every webhook
  received) plus the same idle second for every mode. Prints each round's CPU per
  notification and rate, then best and median per mode and the on/off ratio per round.
  With ``--together`` the three services of a round are loaded at the same time (each over
  its own ``--concurrency`` connections), so whatever else runs on the machine weighs on all
  three alike — the steadier ratio on a shared machine, at a lower rate per service;
* ``--sender``: the sender alone, ``--orders`` x 8 POSTs to 8 receivers in this process, 64 at
  a time; CPU of this process (sender and receivers) per POST.
* ``--claim``: the database side of delivery alone, in this process, against the size of the
  backlog: a fresh database (a SQLite file, or PostgreSQL with ``--postgres``) with 8
  endpoints and ``--backlog`` pending deliveries (already published), then passes as a
  delivery process makes them under a burst: record the last pass's deliveries as delivered
  (beside the claim on PostgreSQL, as the worker does) and lease the next 256, at most 32 per
  endpoint; wall time of those database calls per delivery, over up to 40 passes. Nothing
  is sent. To run another checkout's store on the same harness:
  ``PYTHONPATH=<checkout>/src .venv/bin/python benchmarks/bench_webhooks.py --claim``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import sqlalchemy as sa

import scanpay.store.outbox as outbox_module
from bench_service import (
    HOST,
    SCANPAY,
    SHOP_KEY,
    Connection,
    Notifications,
    Request,
    acknowledged,
    cpu_seconds,
    create_orders,
    free_port,
    percentile,
    run_rate,
    service_env,
    start,
    stop,
)
from scanpay.domain.model import utcnow
from scanpay.simulator import credentials as credential_store
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.outbox import Attempt, EndpointRoom, OutboxStore, Outcome
from scanpay.webhooks.sender import Sender
from scanpay.webhooks.signing import generate_secret, sign_headers


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this machine, by pid."""
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() == "postgres":
                    found[int(proc.name)] = cpu_seconds(int(proc.name)) or 0.0
    return found


def thread_cpu(pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds so far per thread name (``/proc/PID/task/*/comm``) over ``pids``."""
    found: dict[str, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                used = int((task / "schedstat").read_text().split()[0]) / 1e9
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            found[name] = found.get(name, 0.0) + used
    return found


class _Receiving(asyncio.Protocol):
    """One receiver connection: requests framed by Content-Length, each answered 200 at once
    (a protocol rather than asyncio streams: the receivers stand for shops on other machines,
    so what they cost this machine should stay small)."""

    def __init__(self, receivers: Receivers, index: int) -> None:
        self.receivers = receivers
        self.index = index
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            start = end + 4
            if len(self.buffer) < start + length:
                return
            body = self.buffer[start : start + length]
            self.buffer = self.buffer[start + length :]
            self.receivers.arrived(self.index, body, time.perf_counter())
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


class Receivers:
    """HTTP/1.1 receivers on loopback; ``arrivals[(endpoint, order_id)] = perf_counter``."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[int, str], float] = {}
        self.count = 0
        self.waiters: dict[tuple[int, str], asyncio.Future[float]] = {}
        self.servers: list[asyncio.Server] = []

    def arrived(self, index: int, body: bytes, at: float) -> None:
        event = json.loads(body)
        if event["type"] == "order.paid":
            key = (index, event["data"]["id"])
            self.arrivals.setdefault(key, at)
            self.count += 1
            waiter = self.waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(at)

    async def add(self) -> str:
        index = len(self.servers)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Receiving(self, index), HOST, 0)
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


def start_simulator(folder: Path) -> tuple[subprocess.Popen[bytes], str, Notifications]:
    """``scanpay simulator`` on a free loopback port, its state in ``folder``: the process (for
    ``stop``), its URL, and a builder of notifications signed as it signs them."""
    creds, keys = credential_store.load_or_create(folder / "simulator")
    sim_port = free_port()
    sim_url = f"http://{HOST}:{sim_port}"
    sim = start([str(SCANPAY), "simulator", "--state-dir", str(folder / "simulator"),
                 "--port", str(sim_port), "--log-level", "warning"],
                folder / "simulator.log", f"{sim_url}/sim/clock")  # fmt: skip
    return sim, sim_url, Notifications(creds, keys)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-webhooks-") as tmp:
        folder = Path(tmp)
        sim, sim_url, build = start_simulator(folder)
        receivers = Receivers()
        try:
            port = free_port()
            base = f"http://{HOST}:{port}"
            env_file = service_env(folder, build.creds, sim_url, "v2")
            env_file.write_text(
                env_file.read_text()
                + f"SCANPAY_PUBLIC_BASE_URL={base}\nSCANPAY_WEBHOOK_ALLOW_PRIVATE=true\n"
            )
            service = start([str(SCANPAY), "serve", "--host", HOST, "--port", str(port),
                             "--env-file", str(env_file), "--log-level", "warning"],
                            folder / "service.log", f"{base}/healthz")  # fmt: skip
            try:
                await measure(args, base, port, receivers, build, service.pid)
            finally:
                stop(service)
        finally:
            await receivers.close()
            stop(sim)


async def measure(
    args: argparse.Namespace,
    base: str,
    port: int,
    receivers: Receivers,
    build: Notifications,
    pid: int,
    deliverers: Sequence[int] = (),
) -> dict[str, float]:
    """Latency with one endpoint, then throughput with 8; the figures of both."""
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    found: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
        for _ in range(8):
            url = await receivers.add()
            answer = await http.post("/api/webhook-endpoints", json={"url": url})
            answer.raise_for_status()
            if len(receivers.servers) == 1:  # latency first, with one endpoint
                found |= await latency(args, base, port, receivers, build)
    found |= await throughput(args, base, port, receivers, build, pid, deliverers)
    return found


async def latency(
    args: argparse.Namespace, base: str, port: int, receivers: Receivers, build: Notifications
) -> dict[str, float]:
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
        # the first may wait for a delivery process still starting
        arrived = await receivers.wait((0, order.id), 120.0 if n == 0 else 30.0)
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
    return {"p50": statistics.median(from_ack), "p99": percentile(from_ack, 99)}


async def throughput(
    args: argparse.Namespace,
    base: str,
    port: int,
    receivers: Receivers,
    build: Notifications,
    pid: int,
    deliverers: Sequence[int] = (),
) -> dict[str, float]:
    endpoints = len(receivers.servers)
    orders = await create_orders(base, args.orders)
    requests = [build.build("v2", o) for o in orders]
    before = receivers.count
    await asyncio.sleep(1.0)  # the worker done with the orders' creation
    cpu_start = cpu_seconds(pid)
    deliver_start = sum(cpu_seconds(p) or 0.0 for p in deliverers)
    threads_start = thread_cpu(deliverers)
    driver_start = time.process_time()
    machine_start = machine_jiffies()
    database_start = postgres_cpu() if args.pg else {}
    began = time.perf_counter()
    acked_at: list[float] = []
    if args.rate:
        answers, acked_at = await paced(port, requests, args.concurrency, args.rate)
    else:
        _rate, answers = await run_rate(port, requests, args.concurrency, 120.0)
    acked = time.perf_counter()
    if len(answers) != len(requests) or not all(acknowledged("v2", *a) for a in answers):
        raise RuntimeError("not every notification was acknowledged")
    keys = [(e, o.id) for o in orders for e in range(endpoints)]
    arrivals = [await receivers.wait(key, 120.0) for key in keys]
    last = max(arrivals)
    driver_used = time.process_time() - driver_start
    machine_end = machine_jiffies()
    machine = (machine_end[0] - machine_start[0]) / max(1, machine_end[1] - machine_start[1])
    database = (sum(used - database_start.get(pid, 0.0) for pid, used in postgres_cpu().items())
                if args.pg else 0.0)  # fmt: skip
    cpu_end = cpu_seconds(pid)
    deliver_used = (sum(cpu_seconds(p) or 0.0 for p in deliverers) - deliver_start) * 1e3
    threads = {k: v - threads_start.get(k, 0.0) for k, v in thread_cpu(deliverers).items()}
    delivered = receivers.count - before
    notify_rate = len(orders) / (acked - began)
    delivery_rate = delivered / (last - began)
    print(f"throughput, {len(orders)} notifications over {args.concurrency} connections, "
          f"{endpoints} endpoints:")  # fmt: skip
    print(f"  notify/s {notify_rate:7.0f}   deliveries/s {delivery_rate:7.0f} "
          f"({delivery_rate / endpoints:5.0f} per endpoint)   "
          f"lag after last ack {(last - acked) * 1000:7.0f} ms   "
          f"deliveries {delivered} (duplicates {delivered - len(keys)})")  # fmt: skip
    if acked_at:  # paced: how long after its notification's acknowledgement each arrived
        waits = [max(0.0, at - acked_at[n // endpoints]) * 1e3 for n, at in enumerate(arrivals)]
        print(f"  paced at {args.rate:g}/s: acknowledgement -> webhook, all {len(waits)} "
              f"deliveries (ms): p50 {statistics.median(waits):.1f}  p99 "
              f"{percentile(waits, 99):.1f}  max {max(waits):.1f}")  # fmt: skip
    found = {"notify": notify_rate, "deliveries": delivery_rate,
             "per_endpoint": delivery_rate / endpoints, "lag": last - acked,
             "load": os.getloadavg()[0], "driver_busy": driver_used / (last - began),
             "machine_busy": machine}  # fmt: skip
    if args.pg:  # (processes that ended during the run are not counted)
        found["database_ms"] = database * 1e3 / delivered
        print(f"  PostgreSQL (every process of it): {database * 1e3 / len(orders):.3f} ms CPU per "
              f"notification with its {endpoints} deliveries")  # fmt: skip
    if acked_at:
        found |= {"wait_p50": statistics.median(waits), "wait_p99": percentile(waits, 99)}
    # this process (notifications out, the receivers in) and the delivery processes: the
    # share of one CPU each used from the first notification to the last webhook
    print(f"  busy: the machine {machine:.0%} of its {os.cpu_count()} CPUs; this driver and "
          f"its receivers {found['driver_busy']:.0%} of a CPU"
          + (f", delivery process(es) {deliver_used / 1e3 / (last - began):.0%}"
             if deliverers else ""))  # fmt: skip
    if cpu_start is not None and cpu_end is not None:
        used = (cpu_end - cpu_start) * 1e3
        found["service_ms"] = used / len(orders)
        what = f"(with its {endpoints} deliveries)" if not deliverers else "(worker off)"
        print(f"  service CPU {used / len(orders):.3f} ms per notification {what}, "
              f"{used / delivered:.3f} ms per delivery; load average "
              f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    if deliverers:
        found["deliver_ms"] = deliver_used / delivered
        found["deliver_busy"] = deliver_used / 1e3 / (last - began)
        print(
            f"  {len(deliverers)} delivery process(es): CPU {deliver_used / delivered:.3f} ms "
            f"per delivery ({delivered / deliver_used * 1e3:.0f} deliveries per CPU-second)"
        )
        shares = {name: used * 1e3 / delivered for name, used in threads.items()}
        found |= {f"thread {name}": ms for name, ms in shares.items()}
        print("    by thread (ms per delivery): " + ", ".join(
            f"{name} {ms:.3f}" for name, ms in sorted(shares.items()) if ms >= 0.001))  # fmt: skip
    return found


async def paced(
    port: int, requests: Sequence[Request], concurrency: int, rate: float
) -> tuple[list[tuple[int, bytes]], list[float]]:
    """Send ``requests`` at ``rate`` per second (request n due n / rate seconds after the
    start; over ``concurrency`` connections, so a service slower than the rate makes them
    late); returns the answers and when each was acknowledged, in request order."""
    connections: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        connections.put_nowait(await Connection.open(port))
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    acked = [0.0] * len(requests)
    start = time.perf_counter()

    async def send(n: int, r: Request) -> None:
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        conn = await connections.get()
        try:
            answers[n] = await conn.request(r.method, r.path, r.body, r.headers)
            acked[n] = time.perf_counter()
        finally:
            connections.put_nowait(conn)

    await asyncio.gather(*(send(n, r) for n, r in enumerate(requests)))
    while not connections.empty():
        await connections.get_nowait().close()
    return answers, acked


async def published(base: str, kind: str) -> int:
    """How many events of ``kind`` ``GET /api/events`` lists (so: published)."""
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    count, cursor = 0, None
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
        while True:
            params = {"type": kind, "limit": "100"} | ({"after": cursor} if cursor else {})
            page = (await http.get("/api/events", params=params)).raise_for_status().json()
            count += len(page["items"])
            cursor = page["next_cursor"]
            if not page["items"] or not cursor:
                return count


def mode_env(
    folder: Path, build: Notifications, sim_url: str, base: str, mode: str, db: str | None = None
) -> Path:
    """The service's env file; ``db`` another database URL than the SQLite file."""
    folder.mkdir()
    env_file = service_env(folder, build.creds, sim_url, "v2")
    extra = f"SCANPAY_PUBLIC_BASE_URL={base}\nSCANPAY_WEBHOOK_ALLOW_PRIVATE=true\n"
    if mode == "off":
        extra += "SCANPAY_WEBHOOKS_ENABLED=false\n"
    lines = env_file.read_text().splitlines(keepends=True)
    if db is not None:
        lines = [x for x in lines if not x.startswith("SCANPAY_DATABASE_URL=")]
        lines.append(f"SCANPAY_DATABASE_URL={db}\n")
    env_file.write_text("".join(lines) + extra)
    return env_file


def postgres_server() -> str:
    """``$SCANPAY_TEST_POSTGRES_URL`` or the server ``scripts/postgres.sh`` starts."""
    url = os.environ.get("SCANPAY_TEST_POSTGRES_URL")
    if url:
        return url
    script = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"
    return subprocess.run(
        ["bash", str(script)], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A new database on ``server`` for one run, dropped afterwards."""
    name = "bench_webhooks_" + os.urandom(5).hex()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield sa.make_url(server).set(database=name).render_as_string(False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


async def worker_cost_run(
    args: argparse.Namespace,
    folder: Path,
    sim_url: str,
    build: Notifications,
    mode: str,
    barrier: asyncio.Barrier | None = None,
    setup: asyncio.Lock | None = None,
) -> tuple[float, float]:
    """One fresh service in ``mode`` (off, on, hook); returns (CPU ms per notification,
    notifications per second). With ``barrier``, the timed part starts together with the
    other modes' (``--together``)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env_file = mode_env(folder, build, sim_url, base, mode)
    service = start([str(SCANPAY), "serve", "--host", HOST, "--port", str(port),
                     "--env-file", str(env_file), "--log-level", "warning"],
                    folder / "service.log", f"{base}/healthz")  # fmt: skip
    receivers = Receivers()
    try:
        async with setup or contextlib.nullcontext():  # one at a time: the simulator copes
            if mode == "hook":
                url = await receivers.add()
                auth = {"Authorization": f"Bearer {SHOP_KEY}"}
                async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
                    answer = await http.post("/api/webhook-endpoints", json={"url": url})
                    answer.raise_for_status()
            orders = await create_orders(base, args.orders)
        requests = [build.build("v2", o) for o in orders]
        await run_rate(port, [Request("GET", "/healthz")] * 200, args.concurrency, 30.0)
        await asyncio.sleep(1.0)  # the worker done with the orders' creation
        if barrier is not None:
            await barrier.wait()
        cpu_start = cpu_seconds(service.pid)
        rate, answers = await run_rate(port, requests, args.concurrency, 120.0)
        if len(answers) != len(requests) or not all(acknowledged("v2", *a) for a in answers):
            raise RuntimeError("not every notification was acknowledged")
        if mode == "hook":
            for o in orders:
                await receivers.wait((0, o.id), 120.0)
        await asyncio.sleep(1.0)  # the same idle second for every mode
        cpu_end = cpu_seconds(service.pid)
        if mode != "off" and (found := await published(base, "order.paid")) != len(orders):
            raise RuntimeError(f"{found} of {len(orders)} order.paid events published")
        assert cpu_start is not None
        assert cpu_end is not None
        return (cpu_end - cpu_start) / len(requests) * 1e3, rate
    finally:
        await receivers.close()
        stop(service)


async def sender_cost(args: argparse.Namespace, sender: Sender | None = None) -> None:
    """The sender alone: ``--orders`` x 8 POSTs to 8 receivers in this process, up to 64 at a
    time (the worker's concurrency); CPU of this process (sender and receivers) per POST."""
    receivers = Receivers()
    sender = sender or Sender(allow_private=True)
    urls = [await receivers.add() for _ in range(8)]
    body = json.dumps({"type": "order.paid", "data": {"id": "ord_x"}}).encode()
    headers = sign_headers([generate_secret()], "evt_bench", int(time.time()), body)
    gate = asyncio.Semaphore(64)

    async def post(url: str) -> None:
        async with gate:
            answer = await sender.post(url, headers, body)
            if answer.status != 200:
                raise RuntimeError(f"receiver answered {answer}")

    try:
        for label in ("warm-up", "timed"):
            count = 200 if label == "warm-up" else args.orders * 8
            cpu, began = time.process_time(), time.perf_counter()
            await asyncio.gather(*(post(urls[n % 8]) for n in range(count)))
            cpu, took = time.process_time() - cpu, time.perf_counter() - began
        print(f"sender alone, {count} POSTs to 8 loopback receivers, 64 at a time: "
              f"{count / took:.0f}/s, {cpu / count * 1e3:.3f} ms CPU per POST (sender and "
              f"receiver); load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    finally:
        await sender.aclose()
        await receivers.close()


async def worker_cost(args: argparse.Namespace) -> None:
    modes = ("off", "on", "hook")
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-webhooks-") as tmp:
        folder = Path(tmp)
        sim, sim_url, build = start_simulator(folder)
        try:
            print(f"worker cost, v2, {args.orders} notifications over {args.concurrency} "
                  f"connections; load average {os.getloadavg()[0]:.2f} at start")  # fmt: skip
            for n in range(args.rounds):
                line = []
                order = modes if n % 2 == 0 else modes[::-1]  # neither always first
                found: dict[str, tuple[float, float]] = {}
                if args.together:  # the three services loaded at the same time
                    barrier, setup = asyncio.Barrier(len(modes)), asyncio.Lock()
                    done = await asyncio.gather(*(
                        worker_cost_run(args, folder / f"{n}-{m}", sim_url, build, m, barrier,
                                        setup)
                        for m in order
                    ))  # fmt: skip
                    found = dict(zip(order, done, strict=True))
                for mode in order:
                    if args.together:
                        ms, rate = found[mode]
                    else:
                        ms, rate = await worker_cost_run(
                            args, folder / f"{n}-{mode}", sim_url, build, mode
                        )
                    cpu[mode].append(ms)
                    rates[mode].append(rate)
                    line.append(f"{mode} {ms:.3f} ms {rate:5.0f}/s")
                print(f"  round {n + 1}: " + ",  ".join(line)
                      + f"   on/off {cpu['on'][-1] / cpu['off'][-1]:.2f}"
                      + f"   load {os.getloadavg()[0]:.2f}")  # fmt: skip
        finally:
            stop(sim)
    for mode in modes:
        print(f"  {mode:<4} CPU ms/notification best {min(cpu[mode]):.3f} median "
              f"{statistics.median(cpu[mode]):.3f};  notify/s best {max(rates[mode]):.0f} "
              f"median {statistics.median(rates[mode]):.0f}")  # fmt: skip
    ratios = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
    print(f"  on/off CPU per notification, per round: median {statistics.median(ratios):.2f}, "
          f"best {min(ratios):.2f}, worst {max(ratios):.2f}  (goal: <= 1.15)")  # fmt: skip


def spawn_deliverers(
    folder: Path, env_file: Path, count: int, profile: Path | None = None, src: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """``count`` delivery processes; with ``profile``, the first under cProfile (its stats
    written there when it stops); with ``src``, scanpay imported from that source folder
    (another checkout, to compare two versions of the deliverer in one run)."""
    procs = []
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    for n in range(count):
        command = [sys.executable, "-m", "scanpay.cli.main"]
        if profile is not None and n == 0:
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m",
                       "scanpay.cli.main"]  # fmt: skip
        with (folder / f"deliver-{n}.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [*command, "deliver", "--env-file", str(env_file), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, env=env))  # fmt: skip
    return procs


Config = tuple[int, Path | None]  # delivery processes (0: the worker in serve), source


def label_of(config: Config) -> str:
    count, src = config
    if not count:
        return "worker in serve"
    shown = src.parent.name if src is not None and src.name == "src" else str(src)
    return f"serve + {count} deliver" + (f" [{shown}]" if src is not None else "")


async def split_run(
    args: argparse.Namespace, folder: Path, sim_url: str, build: Notifications, config: Config
) -> dict[str, float]:
    """One fresh service (fresh database): with ``deliverers`` 0 its own worker delivers;
    otherwise its worker is off and that many ``scanpay deliver`` processes run beside it."""
    deliverers, src = config
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(scratch_database(args.pg)) if args.pg else None
        return await split_one(args, folder, sim_url, build, deliverers, src, db)


async def split_one(
    args: argparse.Namespace,
    folder: Path,
    sim_url: str,
    build: Notifications,
    deliverers: int,
    src: Path | None,
    db: str | None,
) -> dict[str, float]:
    port = free_port()
    base = f"http://{HOST}:{port}"
    env_file = mode_env(folder, build, sim_url, base, "off" if deliverers else "on", db)
    service = start([str(SCANPAY), "serve", "--host", HOST, "--port", str(port),
                     "--env-file", str(env_file), "--log-level", "warning"],
                    folder / "service.log", f"{base}/healthz")  # fmt: skip
    receivers = Receivers()
    # after serve: the schema is there
    procs = spawn_deliverers(folder, env_file, deliverers, args.profile_deliver, src)
    try:
        pids = [p.pid for p in procs]
        found = await measure(args, base, port, receivers, build, service.pid, pids)
        if pids:  # what the delivery processes cost while nothing happens
            await asyncio.sleep(1.0)
            idle = sum(cpu_seconds(p) or 0.0 for p in pids)
            await asyncio.sleep(3.0)
            found["idle_ms_per_s"] = (sum(cpu_seconds(p) or 0.0 for p in pids) - idle) / 3 * 1e3
            print(f"  delivery process(es) idle: {found['idle_ms_per_s']:.1f} ms CPU per second")
        return found
    finally:
        await receivers.close()
        for proc in procs:
            stop(proc)
        stop(service)


async def split(args: argparse.Namespace) -> None:
    """``--split``: the worker inside ``serve`` against ``--deliverers`` delivery processes
    beside it, each in ``--rounds`` rounds, interleaved (order alternating per round)."""
    configs: list[Config] = [] if args.no_inline else [(0, None)]
    configs += [(n, None) for n in args.deliverers]
    if args.compare_src is not None:
        configs += [(n, args.compare_src) for n in args.deliverers]
    runs: dict[Config, list[dict[str, float]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-webhooks-") as tmp:
        folder = Path(tmp)
        sim, sim_url, build = start_simulator(folder)
        try:
            for n in range(args.rounds):
                for m, config in enumerate(configs if n % 2 == 0 else configs[::-1]):
                    label = label_of(config)
                    print(f"== round {n + 1}: {label}; load average {os.getloadavg()[0]:.2f}")
                    runs[config].append(
                        await split_run(args, folder / f"{n}-{m}", sim_url, build, config)
                    )
        finally:
            stop(sim)
    print(f"summary (one line per run; {'PostgreSQL' if args.pg else 'SQLite'}):")
    for config, found in runs.items():
        label = label_of(config)
        for f in found:
            deliver = (f"deliver CPU {f['deliver_ms']:.3f} ms/delivery, busy "
                       f"{f['deliver_busy']:.0%}, idle {f['idle_ms_per_s']:.1f} ms/s"
                       if config[0] else "")  # fmt: skip
            print(f"  {label:<26} p50 {f['p50']:5.1f} p99 {f['p99']:5.1f} ms | notify/s "
                  f"{f['notify']:5.0f} | per endpoint/s {f['per_endpoint']:5.0f} "
                  f"({f['per_endpoint'] / f['notify']:.2f}x) | lag "
                  f"{f['lag'] * 1e3:6.0f} ms | service {f.get('service_ms', 0):.2f} "
                  f"ms/notification | {deliver} | driver busy {f['driver_busy']:.0%} | machine "
                  f"busy {f['machine_busy']:.0%}"
                  + (f" | PostgreSQL {f['database_ms']:.3f} ms/delivery"
                     if "database_ms" in f else "") + " | load "
                  f"{f['load']:.2f}")  # fmt: skip
            if "wait_p99" in f:
                print(f"  {'':<26} paced at {args.rate:g}/s: each delivery after its "
                      f"notification p50 {f['wait_p50']:.1f} ms, p99 "
                      f"{f['wait_p99']:.1f} ms")  # fmt: skip


def fill_backlog(engine: sa.Engine, outbox: OutboxStore, pending: int) -> None:
    """8 endpoints and ``pending`` published deliveries (``pending`` / 8 events, each of its
    own order) due now."""
    now = utcnow()
    endpoints = [
        outbox.create_endpoint_sync(f"http://127.0.0.1:9/{i}", generate_secret(), None).id
        for i in range(8)
    ]
    events = sa.table(
        "events", *(sa.column(n) for n in ("id", "seq", "type", "data", "created_at",
                                             "position", "public_id", "body")),
    )  # fmt: skip
    deliveries = sa.table(
        "webhook_deliveries",
        *(sa.column(n) for n in ("event_id", "endpoint_id", "order_key", "status", "attempts",
                                 "next_attempt_at", "created_at", "updated_at")),
    )  # fmt: skip
    count = pending // len(endpoints)
    body = json.dumps({"type": "order.paid", "data": {"amount": 1}})
    with engine.begin() as conn:
        conn.execute(sa.insert(events), [
            {"id": i + 1, "seq": 1, "type": "paid", "data": "{}", "created_at": now,
             "position": i + 1, "public_id": f"evt_claim{i}", "body": body}
            for i in range(count)
        ])  # fmt: skip
        conn.execute(sa.insert(deliveries), [
            {"event_id": i + 1, "endpoint_id": e, "order_key": f"o{i}", "status": "pending",
             "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
            for i in range(count) for e in endpoints
        ])  # fmt: skip
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval('events_id_seq', %s)" % (count + 1))


def claim_cost(args: argparse.Namespace) -> None:
    """``--claim``: database time per delivery of record + claim passes, by backlog."""
    limit, passes = 256, 40
    where = "PostgreSQL" if args.pg else "SQLite"
    print(f"claim passes of {limit} (at most 32 per endpoint), up to {passes} passes, {where}; "
          f"store: {Path(outbox_module.__file__).parent}")  # fmt: skip
    for backlog in args.backlog:
        with contextlib.ExitStack() as stack:
            if args.pg:
                url = stack.enter_context(scratch_database(args.pg))
            else:
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite:///{folder}/claim.db"
            engine = make_engine(url)
            stack.callback(engine.dispose)
            upgrade(engine)
            outbox = OutboxStore(engine, None, utcnow)  # type: ignore[arg-type]  # sync calls only
            fill_backlog(engine, outbox, backlog)
            outcomes: list[Outcome] = []
            taken = 0
            spent = 0.0
            with concurrent.futures.ThreadPoolExecutor(1) as beside:
                for _ in range(min(passes, backlog // limit)):
                    room = EndpointRoom(32, {})
                    began = time.perf_counter()
                    if outcomes and outbox.records_apart:
                        recorded = beside.submit(outbox.record_many_sync, "claim", outcomes)
                        cycle = outbox.cycle_sync("claim", 60, limit, (), room=room)
                        recorded.result()
                    else:
                        cycle = outbox.cycle_sync("claim", 60, limit, outcomes, room=room)
                    spent += time.perf_counter() - began
                    taken += len(cycle.claimed)
                    at = utcnow()
                    outcomes = [Outcome(due, Attempt(at, 200, 1, "ok", None), None, True, None)
                                for due in cycle.claimed]  # fmt: skip
        print(f"  backlog {backlog:>6}: {taken} leased, {spent / max(taken, 1) * 1e3:.3f} ms "
              f"of database calls per delivery ({spent / max(taken, 1) * limit * 1e3:.1f} ms "
              f"per pass of {limit})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="notifications (throughput)")
    parser.add_argument("--latency-orders", type=int, default=200, help="timed one at a time")
    parser.add_argument("--concurrency", type=int, default=8, help="notification connections")
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="throughput: send the notifications at this many per second (default: as fast "
        "as the service takes them) and show each delivery's wait after its notification",
    )
    parser.add_argument(
        "--worker-cost",
        action="store_true",
        help="CPU per notification with the worker off, on, on + 1 endpoint",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --worker-cost")
    parser.add_argument(
        "--together",
        action="store_true",
        help="--worker-cost: load the three services at the same time",
    )
    parser.add_argument("--sender", action="store_true", help="the sender alone (CPU per POST)")
    parser.add_argument(
        "--claim", action="store_true", help="record + claim passes alone, by backlog size"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        nargs="+",
        default=[2000, 8000, 32000],
        help="--claim: pending deliveries at the start",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="the worker in serve against serve (worker off) + delivery processes, interleaved",
    )
    parser.add_argument(
        "--deliverers",
        type=int,
        nargs="+",
        default=[1],
        help="--split: delivery process counts to compare (default 1)",
    )
    parser.add_argument(
        "--profile-deliver",
        type=Path,
        default=None,
        help="--split: run the first delivery process under cProfile, stats to this file",
    )
    parser.add_argument(
        "--compare-src",
        type=Path,
        default=None,
        help="--split: also run the delivery processes from this source folder (another "
        "checkout's src/), interleaved with this one's",
    )
    parser.add_argument(
        "--no-inline", action="store_true", help="--split: leave out the worker-in-serve runs"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="--split, --claim: PostgreSQL ($SCANPAY_TEST_POSTGRES_URL or scripts/postgres.sh; "
        "a fresh database per run) instead of a SQLite file",
    )
    args = parser.parse_args()
    args.pg = postgres_server() if args.postgres else None
    if args.quick:
        args.orders, args.latency_orders, args.rounds = 100, 30, 1
    if args.split and "--rounds" not in sys.argv[1:] and not args.quick:
        args.rounds = 2
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.claim:
        claim_cost(args)
    elif args.sender:
        asyncio.run(sender_cost(args))
    elif args.split:
        asyncio.run(split(args))
    else:
        asyncio.run(worker_cost(args) if args.worker_cost else run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
