"""Merchant service throughput and latency: payment notifications processed per second (API v2
and v3, SQLite) beside the same server's rate on an empty endpoint, and the time from a
notification being sent to the status stream (SSE) delivering "paid".

Run: ``.venv/bin/python benchmarks/bench_service.py`` (about two minutes) or ``--quick``.
``--observability on off`` (the default: both) runs each API twice: *off* = text logs and
``SCANPAY_OBSERVE_REQUESTS=false`` (no request ids, access lines or HTTP/WeChat call
metrics); *on* = ``SCANPAY_LOG_FORMAT=json``, request observation and ``/metrics`` served
(scraped once per phase). The last lines give the service CPU per notification that
observability adds (issue 9's goal: at most 10 %).

Method (issue 5's benchmark; loopback only, bounded in count and time):

* the service runs as ``scanpay serve`` in its own process (one uvicorn worker, SQLite file in
  a temporary folder, log level ``info`` as deployed, the reconciler switched off so its
  queries do not mix into the figures); the simulator runs as ``scanpay simulator`` in another
  process and only serves order creation (each order's unified order / v3 prepay);
* one phase per API version (a fresh service and database each): ``--orders`` pending orders
  are created through ``POST /api/orders``; for each, a valid payment notification is built
  the way the simulator builds it — :func:`scanpay.wechat.v2.notify.build_payment_notification`
  with the simulator's API v2 key (HMAC-SHA256), or
  :func:`scanpay.wechat.v3.notify.build_notification` with the API v3 key plus
  :func:`scanpay.wechat.v3.verify.sign_response` with the simulator's public-key-mode key —
  all built before timing starts;
* *ceiling*: ``GET /healthz`` (an empty JSON endpoint of the same server); *notifications/s*:
  the bodies POSTed to ``/notify/v2`` or ``/notify/v3`` over ``--concurrency`` keep-alive
  connections; every answer must be an acknowledgement and every order must end paid
  (checked after timing). The notifications are sent in ``--rounds`` equal chunks, each
  between two ``/healthz`` runs of the same size, so both rates are taken under the same
  machine conditions: *ratio* is all notifications over their total time, divided by the best
  ``/healthz`` rate of the phase (the conservative figure); *paired* is the median over the
  rounds of each chunk's rate divided by the better of its two neighbouring ``/healthz`` runs;
* *CPU per request*: the service process's CPU time (all its threads, from
  ``/proc/PID/task/*/schedstat``) spent during each timed run, divided by its requests
  (medians over the runs) — what one request costs the server, whatever the driver does;
* the driver speaks HTTP/1.1 itself over asyncio streams (a few dozen lines), because httpx's
  per-request cost would otherwise be a large part of what is measured; the driver shares the
  two cores with the service, so both rates are "this machine, this driver";
* *latency*: ``--latency-orders`` more pending orders each get a status stream opened (httpx;
  the ``snapshot`` message read) before any notification is sent; then, one at a time, the
  clock starts when the notification's POST is written and stops when that order's stream
  delivers ``"status": "paid"``; p50, p90, p99 and max are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from scanpay.simulator import credentials as credential_store
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.keys import load_private_key
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.notify import build_payment_notification, is_success_ack
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import sign_response

ROOT = Path(__file__).resolve().parent.parent
SCANPAY = Path(sys.executable).with_name("scanpay")
SHOP_KEY = "bench-shop-key-" + "0" * 16
METRICS_TOKEN = "bench-metrics-token-" + "0" * 16
HOST = "127.0.0.1"
BEIJING_OFFSET_SECONDS = 8 * 3600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{url} did not come up")


def start(command: list[str], log: Path, health_url: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_until_up(health_url, process, log)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # uvicorn stops cleanly; py-spy writes its profile
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- a minimal HTTP/1.1 keep-alive client ------------------------------------------------


class Connection:
    """One keep-alive connection; requests are sent one after another on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise RuntimeError("chunked answers are not expected here")
        return status, await self.reader.readexactly(length) if length else b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


async def run_rate(
    port: int, requests: Sequence[Request], concurrency: int, seconds: float
) -> tuple[float, list[tuple[int, bytes]]]:
    """Send ``requests`` over ``concurrency`` connections; returns (requests per second,
    answers in request order). Stops early after ``seconds``."""
    answers: list[tuple[int, bytes] | None] = [None] * len(requests)
    connections = [await Connection.open(port) for _ in range(concurrency)]
    cursor = iter(range(len(requests)))
    deadline = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        for index in cursor:
            if time.perf_counter() > deadline:
                return
            r = requests[index]
            answers[index] = await conn.request(r.method, r.path, r.body, r.headers)

    began = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in connections))
    elapsed = time.perf_counter() - began
    for conn in connections:
        await conn.close()
    done = [a for a in answers if a is not None]
    return len(done) / elapsed, done


# ---- orders and notifications ------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    id: str
    out_trade_no: str
    amount: int


async def create_orders(base: str, count: int, concurrency: int = 8) -> list[Placed]:
    placed: list[Placed] = []
    queue = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def worker() -> None:
            for n in queue:
                response = await http.post(
                    "/api/orders",
                    json={"amount": 100 + n % 900, "description": f"Bench tea {n}"},
                    headers={"Authorization": f"Bearer {SHOP_KEY}"},
                )
                response.raise_for_status()
                body = response.json()
                placed.append(Placed(body["id"], body["out_trade_no"], body["amount"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return placed


class Notifications:
    """Signed payment notifications as the simulator would send them."""

    def __init__(self, creds: MerchantCredentials, keys: SimulatorKeys) -> None:
        self.creds = creds
        self.public_key_private = load_private_key(keys.wechatpay_private_key_pem.reveal())

    def v2(self, order: Placed) -> Request:
        now = datetime.now(UTC).timestamp() + BEIJING_OFFSET_SECONDS
        fields: dict[str, str | int] = {
            "appid": self.creds.appid,
            "mch_id": self.creds.mchid,
            "nonce_str": secrets.token_hex(16),
            "openid": "oBenchOpenId0000000000000000",
            "is_subscribe": "N",
            "trade_type": "NATIVE",
            "bank_type": "OTHERS",
            "total_fee": order.amount,
            "fee_type": "CNY",
            "cash_fee": order.amount,
            "transaction_id": "42" + secrets.token_hex(13)[:26],
            "out_trade_no": order.out_trade_no,
            "time_end": time.strftime("%Y%m%d%H%M%S", time.gmtime(now)),
        }
        body = build_payment_notification(fields, self.creds.api_v2_key, SignType.HMAC_SHA256)
        return Request("POST", "/notify/v2", body, (("Content-Type", "text/xml"),))

    def v3(self, order: Placed) -> Request:
        now = datetime.now(UTC)
        resource = Transaction(
            appid=self.creds.appid,
            mchid=self.creds.mchid,
            out_trade_no=order.out_trade_no,
            trade_state=TradeState.SUCCESS,
            trade_state_desc="支付成功",
            transaction_id="42" + secrets.token_hex(13)[:26],
            trade_type="NATIVE",
            bank_type="OTHERS",
            success_time=now,
            payer_openid="oBenchOpenId0000000000000000",
            total=order.amount,
            payer_total=order.amount,
        )
        body = build_notification(
            resource,
            self.creds.api_v3_key,
            notification_id=str(uuid.uuid4()),
            create_time=now,
            nonce=secrets.token_hex(6),
        )
        headers = sign_response(
            body,
            serial=self.creds.wechatpay_public_key_id,
            private_key=self.public_key_private,
            timestamp=int(now.timestamp()),
            nonce=secrets.token_hex(16).upper(),
        )
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048"
        headers["Content-Type"] = "application/json"
        return Request("POST", "/notify/v3", body, tuple(headers.items()))

    def build(self, api: str, order: Placed) -> Request:
        return self.v2(order) if api == "v2" else self.v3(order)


def acknowledged(api: str, status: int, body: bytes) -> bool:
    if api == "v2":
        return status == 200 and is_success_ack(body)
    return status in (200, 204)


# ---- the status stream -------------------------------------------------------------------


async def follow(
    http: httpx.AsyncClient, order_id: str, ready: asyncio.Event, paid: asyncio.Future[float]
) -> None:
    async with http.stream("GET", f"/api/orders/{order_id}/events") as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message["type"] == "snapshot":
                ready.set()
            if message["status"] == "paid":
                paid.set_result(time.perf_counter())
                return


async def stream_latency(
    base: str, port: int, orders: list[Placed], build: Notifications, api: str
) -> list[float]:
    limits = httpx.Limits(max_connections=len(orders) + 4, max_keepalive_connections=0)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        readies = [asyncio.Event() for _ in orders]
        paids: list[asyncio.Future[float]] = [loop.create_future() for _ in orders]
        tasks = [
            asyncio.create_task(follow(http, o.id, r, p))
            for o, r, p in zip(orders, readies, paids, strict=True)
        ]
        async with asyncio.timeout(60):
            await asyncio.gather(*(r.wait() for r in readies))
        requests = [build.build(api, o) for o in orders]
        conn = await Connection.open(port)
        latencies: list[float] = []
        for request, paid in zip(requests, paids, strict=True):
            began = time.perf_counter()
            status, answer = await conn.request(
                request.method, request.path, request.body, request.headers
            )
            if not acknowledged(api, status, answer):
                raise RuntimeError(f"notification refused: {status} {answer[:200]!r}")
            async with asyncio.timeout(10):
                arrived = await paid
            latencies.append((arrived - began) * 1000)
            await asyncio.sleep(0.005)  # one at a time: latency, not throughput
        await conn.close()
        await asyncio.gather(*tasks)
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# ---- one phase per API version -----------------------------------------------------------


def service_env(
    folder: Path, creds: MerchantCredentials, sim_url: str, api: str, observe: str = "off"
) -> Path:
    values = {
        "SCANPAY_DATABASE_URL": f"sqlite:///{folder / f'shop-{api}.sqlite3'}",
        "SCANPAY_SHOP_API_KEY": SHOP_KEY,
        "SCANPAY_WECHAT_BASE_URL": sim_url,
        "SCANPAY_APPID": creds.appid,
        "SCANPAY_MCHID": creds.mchid,
        "SCANPAY_API_V2_KEY": creds.api_v2_key.reveal(),
        "SCANPAY_RECONCILER_ENABLED": "false",
        "SCANPAY_API_VERSION": api,
    }
    if observe == "on":
        values |= {"SCANPAY_LOG_FORMAT": "json", "SCANPAY_OBSERVE_REQUESTS": "true",
                   "SCANPAY_METRICS_TOKEN": METRICS_TOKEN}  # fmt: skip
    else:
        values |= {"SCANPAY_LOG_FORMAT": "text", "SCANPAY_OBSERVE_REQUESTS": "false"}
    if api == "v3":
        key_file = folder / "apiclient_key.pem"
        key_file.write_text(creds.merchant_private_key_pem.reveal())
        public_file = folder / "pub_key.pem"
        public_file.write_text(creds.wechatpay_public_key_pem)
        values |= {
            "SCANPAY_API_V3_KEY": creds.api_v3_key.reveal(),
            "SCANPAY_MERCHANT_KEY_FILE": str(key_file),
            "SCANPAY_MERCHANT_SERIAL_NO": creds.merchant_serial_no,
            "SCANPAY_WECHATPAY_PUBLIC_KEY_ID": creds.wechatpay_public_key_id,
            "SCANPAY_WECHATPAY_PUBLIC_KEY_FILE": str(public_file),
        }
    path = folder / f"service-{api}-{observe}.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class PhaseResult:
    api: str
    observe: str
    ceiling: float
    rate: float
    notifications: int
    latencies: list[float]
    paired: list[float]
    cpu_health_ms: float | None
    cpu_notify_ms: float | None


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by every thread of process ``pid`` (None: not measurable)."""
    if pid is None:
        return None
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


@dataclass(frozen=True)
class Timed:
    rate: float
    answers: list[tuple[int, bytes]]
    cpu_ms: float | None  # service CPU per request


async def timed(
    port: int, requests: Sequence[Request], args: argparse.Namespace, pid: int | None
) -> Timed:
    start = cpu_seconds(pid)
    rate, answers = await run_rate(port, requests, args.concurrency, args.seconds)
    end = cpu_seconds(pid)
    cpu = None if start is None or end is None else (end - start) / len(answers) * 1e3
    return Timed(rate, answers, cpu)


def median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


async def phase(
    api: str,
    args: argparse.Namespace,
    folder: Path,
    sim_url: str,
    build: Notifications,
    observe: str = "off",
) -> PhaseResult:
    port = free_port()
    base = f"http://{HOST}:{port}"
    env_file = service_env(folder, build.creds, sim_url, api, observe)
    env_file.write_text(env_file.read_text() + f"SCANPAY_PUBLIC_BASE_URL={base}\n")
    command = [str(SCANPAY), "serve", "--host", HOST, "--port", str(port)]
    if args.py_spy:  # profile the service: collapsed stacks for flame graphs
        spy = Path(sys.executable).with_name("py-spy")
        command = [str(spy), "record", "--format", "raw", "--rate", "250",
                   "-o", f"{args.py_spy}-{api}.txt", "--", *command]  # fmt: skip
    process = start([*command, "--env-file", str(env_file)],
                    folder / f"service-{api}-{observe}.log",
                    f"{base}/healthz")  # fmt: skip
    try:
        orders = await create_orders(base, args.orders + args.latency_orders)
        throughput, followed = orders[: args.orders], orders[args.orders :]
        notifications = [build.build(api, o) for o in throughput]
        size = -(-len(notifications) // args.rounds)
        chunks = [notifications[i : i + size] for i in range(0, len(notifications), size)]
        health = [Request("GET", "/healthz")] * size
        pid = None if args.py_spy else process.pid
        await run_rate(port, health[:200], args.concurrency, args.seconds)  # warm-up
        healths = [await timed(port, health, args, pid)]
        runs: list[Timed] = []
        for chunk in chunks:
            runs.append(await timed(port, chunk, args, pid))
            healths.append(await timed(port, health, args, pid))
        answers = [answer for run in runs for answer in run.answers]
        rate = len(answers) / sum(len(run.answers) / run.rate for run in runs)
        paired = [
            run.rate / max(healths[i].rate, healths[i + 1].rate) for i, run in enumerate(runs)
        ]
        refused = [a for a in answers if not acknowledged(api, *a)]
        if refused:
            raise RuntimeError(f"{len(refused)} notifications refused, e.g. {refused[0]!r}")
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for order in throughput[: len(answers)]:
                status = (await http.get(f"/api/orders/{order.id}")).json()["status"]
                if status != "paid":
                    raise RuntimeError(f"order {order.id} is {status} after its notification")
        latencies = await stream_latency(base, port, followed, build, api)
        if observe == "on":  # the metrics are there and count what was sent
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
                scraped = (await http.get("/metrics", headers=auth)).text
            if f'api="{api}-payment",outcome="applied"' not in scraped:
                raise RuntimeError("/metrics does not count the notifications")
        ceiling = max(h.rate for h in healths)
        return PhaseResult(
            api, observe, ceiling, rate, len(answers), latencies, paired,
            median_or_none([h.cpu_ms for h in healths]),
            median_or_none([run.cpu_ms for run in runs]),
        )  # fmt: skip
    finally:
        stop(process)


async def main_async(args: argparse.Namespace) -> list[PhaseResult]:
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-service-") as tmp:
        folder = Path(tmp)
        creds, keys = credential_store.load_or_create(folder / "simulator")
        sim_port = free_port()
        sim_url = f"http://{HOST}:{sim_port}"
        sim_command = [str(SCANPAY), "simulator", "--state-dir", str(folder / "simulator")]
        sim = start([*sim_command, "--port", str(sim_port), "--log-level", "warning"],
                    folder / "simulator.log", f"{sim_url}/sim/clock")  # fmt: skip
        try:
            build = Notifications(creds, keys)
            return [
                await phase(api, args, folder, sim_url, build, observe)
                for api in args.api
                for observe in args.observability
            ]
        finally:
            stop(sim)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1500, help="notifications per API")
    parser.add_argument("--latency-orders", type=int, default=200, help="streams timed per API")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in flight")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per timed run")
    parser.add_argument("--rounds", type=int, default=5, help="notification chunks, each "
                        "between two /healthz runs")  # fmt: skip
    parser.add_argument("--api", nargs="+", default=["v2", "v3"], choices=["v2", "v3"])
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    parser.add_argument("--py-spy", metavar="PREFIX", help="run the service under py-spy record")
    parser.add_argument("--observability", nargs="+", default=["off", "on"],
                        choices=["off", "on"], help="JSON logs, request metrics")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.orders, args.latency_orders, args.seconds = 100, 20, 10.0
    results = asyncio.run(main_async(args))
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.orders} notifications and {args.latency_orders} streams per API, "
        f"{args.concurrency} connections"
    )
    print(f"{'api':<4} {'obs':<3} {'ceiling req/s':>14} {'notify/s':>9} {'ratio':>6} "
          f"{'paired':>17}  "
          f"{'CPU ms/req: healthz':>19} {'notify':>7} {'ratio':>6}   "
          f"{'stream p50':>10} {'p90':>6} {'p99':>6} {'max':>6}  (ms)")  # fmt: skip
    for r in results:
        lat = r.latencies
        paired = f"{statistics.median(r.paired):.2f} ({min(r.paired):.2f}-{max(r.paired):.2f})"
        if r.cpu_health_ms is not None and r.cpu_notify_ms is not None:
            cpu = (f"{r.cpu_health_ms:>19.3f} {r.cpu_notify_ms:>7.3f} "
                   f"{r.cpu_health_ms / r.cpu_notify_ms:>6.2f}")  # fmt: skip
        else:
            cpu = f"{'(under py-spy)':>34}"
        print(
            f"{r.api:<4} {r.observe:<3} {r.ceiling:>14.0f} {r.rate:>9.0f} "
            f"{r.rate / r.ceiling:>6.2f} "
            f"{paired:>17}  {cpu}   "
            f"{statistics.median(lat):>10.1f} {percentile(lat, 90):>6.1f} "
            f"{percentile(lat, 99):>6.1f} {max(lat):>6.1f}"
        )
    by_key = {(r.api, r.observe): r for r in results}
    for api in args.api:
        off, on = by_key.get((api, "off")), by_key.get((api, "on"))
        if off is None or on is None or off.cpu_notify_ms is None or on.cpu_notify_ms is None:
            continue
        added = on.cpu_notify_ms / off.cpu_notify_ms - 1
        print(f"# {api}: observability adds {on.cpu_notify_ms - off.cpu_notify_ms:.3f} ms CPU "
              f"per notification ({added:+.1%}; goal <= +10%)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
