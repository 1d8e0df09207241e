"""Several instances on PostgreSQL: notifications per second on PostgreSQL vs SQLite with one
instance, one vs two instances, what NOTIFY costs, database round trips per notification, and
the time from a notification settled on instance A to the status stream on instance B.

Run: ``.venv/bin/python benchmarks/bench_cluster.py`` (a few minutes) or ``--quick``;
``--configurations sqlite,pg`` times only those configurations. The PostgreSQL server is
``$SCANPAY_TEST_POSTGRES_URL`` or the one ``scripts/postgres.sh`` starts.

Method (loopback; API v2 notifications, built and signed as the simulator does, with
``bench_service.Notifications``; the driver is ``bench_service``'s HTTP/1.1 client):

* processes: the simulator (``scanpay simulator``, for order creation only); instance S on
  SQLite; instances P1 and P2 on one PostgreSQL database (``scanpay db upgrade`` first); all
  ``scanpay serve``, reconciler off, log level ``warning``;
* *notifications/s*: ``--rounds`` rounds; in each, chunks of ``--chunk`` notifications (for
  orders created beforehand) are sent over ``--concurrency`` connections to: S alone; P1
  alone; P1 and P2 together (half the connections each, each its own orders); P1 and P2 with
  ``--concurrency`` connections each; P1 with the NOTIFY trigger switched off (``ALTER TABLE
  orders DISABLE TRIGGER``); and P1 beside a CPU burner (a process busy for ``--burn-share``
  of every 10 ms: the calibration of "as many each", telling how much of its CPU per
  notification is two busy processes sharing the cores), in a rotating order so every
  configuration sees the same machine conditions. Reported: total notifications over total
  time per configuration, the median of the per-round PostgreSQL/SQLite ratios, the CPU time
  per notification of the instance processes (all threads, from
  ``/proc/PID/task/*/schedstat``; for two instances, both processes' CPU over all
  notifications) and of PostgreSQL's processes (the server runs on this machine and shares its
  cores), and the write transactions PostgreSQL started per notification (transaction ids
  handed out: the group commit's batches);
* *round trips per notification*: the same notification path in this process (``create_app``
  on PostgreSQL, called through ``httpx.ASGITransport``, 8 at once): the group commit's
  counters give notifications per transaction; each transaction is two round trips by
  construction (the pipelined read-and-lock of the batch's rows, then the writes sent with
  the COMMIT; ``scanpay.store.settle.PgSettler``); anything else the path sends to the
  database goes through SQLAlchemy and is counted (statements, BEGINs, COMMITs);
* *stream latency*: ``--latency-orders`` orders, each with a status stream open on P2
  (snapshot received, then the streams' first reads done: ``settled``); one at a time, the
  clock starts when the notification is written to P1 and stops when P2's stream delivers
  "paid" (LISTEN/NOTIFY); the same with the stream on P1 itself as the reference. p50, p90,
  p99 and max.

The two cores are shared by the driver, the instances and PostgreSQL: read rates as "this
machine, this driver"; the ratios and CPU per notification are the comparable figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench_service import (
    HOST,
    ROOT,
    SCANPAY,
    SHOP_KEY,
    Connection,
    Notifications,
    Placed,
    Request,
    acknowledged,
    cpu_seconds,
    follow,
    free_port,
    percentile,
    run_rate,
    start,
    stop,
)
from scanpay.simulator import credentials as credential_store
from scanpay.simulator.credentials import MerchantCredentials

NAMES = ["sqlite", "pg", "pg x2", "pg x2 full", "pg no notify", "pg burner"]  # in turn
# A stand-in for a second busy process on the machine (calibration of "pg x2 full"): busy for
# ``share`` of every 10 ms, asleep for the rest.
BURNER = """
import sys, time
share = float(sys.argv[1])
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < 0.01 * share:
        pass
    time.sleep(0.01 * (1 - share))
"""


@dataclass
class Instance:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    orders: list[Placed] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def take(self, count: int) -> list[Placed]:
        taken, self.orders = self.orders[:count], self.orders[count:]
        if len(taken) < count:
            raise RuntimeError(f"{self.name}: not enough orders made beforehand")
        return taken


def start_instance(
    name: str, database_url: str, folder: Path, creds: MerchantCredentials, sim_url: str
) -> Instance:
    port = free_port()
    env = {
        "SCANPAY_DATABASE_URL": database_url,
        "SCANPAY_SHOP_API_KEY": SHOP_KEY,
        "SCANPAY_PUBLIC_BASE_URL": f"http://{HOST}:{port}",
        "SCANPAY_WECHAT_BASE_URL": sim_url,
        "SCANPAY_APPID": creds.appid,
        "SCANPAY_MCHID": creds.mchid,
        "SCANPAY_API_V2_KEY": creds.api_v2_key.reveal(),
        "SCANPAY_RECONCILER_ENABLED": "false",
        "SCANPAY_INSTANCE_NAME": name,
    }
    env_file = folder / f"{name}.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    command = [str(SCANPAY), "serve", "--host", HOST, "--port", str(port), "--log-level",
               "warning", "--env-file", str(env_file)]  # fmt: skip
    process = start(command, folder / f"{name}.log", f"http://{HOST}:{port}/readyz")
    return Instance(name, port, process)


@dataclass
class Tally:
    """One configuration's timed chunks."""

    notifications: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0  # PostgreSQL's processes
    commits: int = 0  # write transactions on the server
    rates: list[float] = field(default_factory=list)

    def add(self, count: int, seconds: float, cpu: float, server: tuple[float, int]) -> None:
        self.notifications += count
        self.seconds += seconds
        self.cpu += cpu
        self.server_cpu += server[0]
        self.commits += server[1]
        self.rates.append(count / seconds)

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.notifications * 1e3

    @property
    def server_ms(self) -> float:
        return self.server_cpu / self.notifications * 1e3


class PgProbe:
    """PostgreSQL's side of a timed chunk: the CPU time of all the server's processes (the
    postmaster's children, from ``/proc``: the server runs on this machine) and the write
    transactions started on the server (transaction ids handed out: the next one is read
    without taking one)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            self.postmaster = _parent(pid)

    def cpu(self) -> float:
        total = cpu_seconds(self.postmaster) or 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent(int(entry.name)) == self.postmaster:
                total += cpu_seconds(int(entry.name)) or 0.0
        return total

    def commits(self) -> int:
        with self.engine.connect() as conn:
            next_xid = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
            return int(conn.exec_driver_sql(next_xid).scalar_one())

    def sample(self) -> tuple[float, int]:
        return self.cpu(), self.commits()


def _parent(pid: int) -> int | None:
    try:
        return int((Path(f"/proc/{pid}/stat").read_text()).rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


async def create_orders(base: str, count: int, concurrency: int = 8) -> list[Placed]:
    """Orders through the shop API; a failed call (a slow simulator on a loaded machine) is
    retried with the same Idempotency-Key."""
    placed: list[Placed] = []
    queue = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency)
    prefix = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def worker() -> None:
            for n in queue:
                headers = {
                    "Authorization": f"Bearer {SHOP_KEY}",
                    "Idempotency-Key": f"{prefix}-{n}",
                }
                for _ in range(20):
                    response = await http.post(
                        "/api/orders",
                        json={"amount": 100 + n % 900, "description": f"Bench tea {n}"},
                        headers=headers,
                    )
                    if response.status_code in (200, 201) and response.json().get("code_url"):
                        break
                    await asyncio.sleep(0.5)
                response.raise_for_status()
                body = response.json()
                placed.append(Placed(body["id"], body["out_trade_no"], body["amount"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return placed


async def send(
    targets: Sequence[tuple[Instance, list[Request]]], per: int, probe: PgProbe
) -> tuple[int, float, float, tuple[float, int]]:
    """Send each target its requests at once, over ``per`` connections each; (count,
    seconds, CPU seconds of the target processes, (PostgreSQL CPU seconds, commits))."""
    cpu_before = sum(cpu_seconds(t.process.pid) or 0.0 for t, _ in targets)
    server_before = probe.sample()
    began = time.perf_counter()
    results = await asyncio.gather(
        *(run_rate(t.port, requests, per, 300.0) for t, requests in targets)
    )
    seconds = time.perf_counter() - began
    cpu = sum(cpu_seconds(t.process.pid) or 0.0 for t, _ in targets) - cpu_before
    server_after = probe.sample()
    server = (server_after[0] - server_before[0], server_after[1] - server_before[1])
    count = 0
    for (_, answers), (_, requests) in zip(results, targets, strict=True):
        refused = [a for a in answers if not acknowledged("v2", *a)]
        if refused or len(answers) != len(requests):
            raise RuntimeError(f"notifications refused or cut short: {refused[:1]!r}")
        count += len(answers)
    return count, seconds, cpu, server


async def settled(http: httpx.AsyncClient) -> None:
    """Return once the streams just opened on ``http``'s instance have made their first read.

    A stream's snapshot arrives *before* its first read of the order's events, and the
    instance's database calls share a few threads (asyncio's default executor, FIFO), so right
    after hundreds of streams open hundreds of those reads are still queued: a payment timed
    then waits behind them (the ~100-200 ms first orders under load, docs/benchmarks.md). A
    request for an unknown order's stream (404 after one read) joins the back of that queue,
    so its answer means the queue ahead of it has been served; the clock starts after it."""
    for _ in range(2):  # the second confirms the threads are not busy any more
        answer = await http.get(f"/api/orders/ord_{'0' * 22}/events")
        if answer.status_code != 404:
            raise RuntimeError(f"expected 404 for an unknown order, got {answer.status_code}")


async def latency(
    stream_on: Instance, post_to: Instance, orders: list[Placed], build: Notifications
) -> list[float]:
    """Streams open on ``stream_on``; notifications POSTed to ``post_to`` one at a time."""
    limits = httpx.Limits(max_connections=len(orders) + 4, max_keepalive_connections=0)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=stream_on.base, timeout=60, limits=limits) as http:
        readies = [asyncio.Event() for _ in orders]
        paids: list[asyncio.Future[float]] = [loop.create_future() for _ in orders]
        tasks = [
            asyncio.create_task(follow(http, o.id, r, p))
            for o, r, p in zip(orders, readies, paids, strict=True)
        ]
        async with asyncio.timeout(60):
            await asyncio.gather(*(r.wait() for r in readies))
            await settled(http)
        conn = await Connection.open(post_to.port)
        latencies: list[float] = []
        for order, paid in zip(orders, paids, strict=True):
            request = build.v2(order)
            began = time.perf_counter()
            status, answer = await conn.request(
                request.method, request.path, request.body, request.headers
            )
            if not acknowledged("v2", status, answer):
                raise RuntimeError(f"notification refused: {status} {answer[:200]!r}")
            async with asyncio.timeout(10):
                arrived = await paid
            latencies.append((arrived - began) * 1000)
            await asyncio.sleep(0.005)
        await conn.close()
        await asyncio.gather(*tasks)
    return latencies


async def round_trips(
    database_url: str, creds: MerchantCredentials, sim_url: str, build: Notifications, count: int
) -> tuple[float, float]:
    """The in-process notification path: (notifications per group-commit transaction, other
    statements per notification, i.e. through SQLAlchemy outside the batch path)."""
    from scanpay.config import Settings
    from scanpay.web.app import create_app

    settings = Settings(
        database_url=database_url,
        shop_api_key=SHOP_KEY,
        wechat_base_url=sim_url,
        appid=creds.appid,
        mchid=creds.mchid,
        api_v2_key=creds.api_v2_key.reveal(),
        reconciler_enabled=False,
    )
    app = create_app(settings)
    engine: sa.Engine = app.state.scanpay.store.engine
    counts = {"statements": 0, "begins": 0, "commits": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    def begin(*_: object) -> None:
        counts["begins"] += 1

    def commit(*_: object) -> None:
        counts["commits"] += 1

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            placed: list[Placed] = []
            for n in range(count):
                answer = await http.post(
                    "/api/orders",
                    json={"amount": 100 + n, "description": "Bench tea"},
                    headers={"Authorization": f"Bearer {SHOP_KEY}"},
                )
                body = answer.json()
                placed.append(Placed(body["id"], body["out_trade_no"], body["amount"]))
            requests = [build.v2(order) for order in placed]
            sa.event.listen(engine, "before_cursor_execute", statement)
            sa.event.listen(engine, "begin", begin)
            sa.event.listen(engine, "commit", commit)
            queue = iter(requests)

            async def worker() -> None:
                for request in queue:
                    answer = await http.post(
                        request.path, content=request.body, headers=dict(request.headers)
                    )
                    if not acknowledged("v2", answer.status_code, answer.content):
                        raise RuntimeError(f"refused: {answer.status_code}")

            group = app.state.scanpay.store._group
            before = (group.batches, group.items)
            await asyncio.gather(*(worker() for _ in range(8)))
            batches, items = group.batches - before[0], group.items - before[1]
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine, "begin", begin)
        sa.event.remove(engine, "commit", commit)
        await app.state.scanpay.aclose()
    if items != count:
        raise RuntimeError(f"{count - items} notifications took the general path")
    other = counts["statements"] + counts["begins"] + counts["commits"]
    return items / batches, other / count


def postgres_server() -> str:
    url = os.environ.get("SCANPAY_TEST_POSTGRES_URL")
    if url:
        return url
    script = ROOT / "scripts" / "postgres.sh"
    return subprocess.run(
        ["bash", str(script)], check=True, capture_output=True, text=True
    ).stdout.strip()


async def main_async(args: argparse.Namespace, pg_url: str) -> None:
    pg = sa.create_engine(pg_url)
    probe = PgProbe(pg)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scanpay-bench-cluster-") as tmp:
            folder = Path(tmp)
            creds, keys = credential_store.load_or_create(folder / "simulator")
            build = Notifications(creds, keys)
            sim_port = free_port()
            sim_url = f"http://{HOST}:{sim_port}"
            sim = start([str(SCANPAY), "simulator", "--state-dir", str(folder / "simulator"),
                         "--port", str(sim_port), "--log-level", "warning"],
                        folder / "simulator.log", f"{sim_url}/sim/clock")  # fmt: skip
            processes.append(sim)
            s = start_instance("S", f"sqlite:///{folder / 'shop.sqlite3'}", folder, creds, sim_url)
            p1 = start_instance("P1", pg_url, folder, creds, sim_url)
            p2 = start_instance("P2", pg_url, folder, creds, sim_url)
            processes += [s.process, p1.process, p2.process]
            chunk, rounds = args.chunk, args.rounds
            s.orders = await create_orders(s.base, chunk * rounds)
            half = chunk // 2
            names = [n for n in NAMES if n in args.configurations]
            pairs = sum(1 for n in names if n.startswith("pg x2"))
            singles = sum(1 for n in names if n.startswith("pg") and not n.startswith("pg x2"))
            p1.orders = await create_orders(
                p1.base, (singles * chunk + pairs * half) * rounds + 2 * args.latency_orders
            )
            p2.orders = await create_orders(p2.base, max(1, pairs * half * rounds))
            tallies = {name: Tally() for name in names}
            ratios: list[float] = []
            for n in range(rounds):
                plan = names[n % len(names) :] + names[: n % len(names)]
                for name in plan:
                    per = args.concurrency
                    if name == "sqlite":
                        targets = [(s, [build.v2(o) for o in s.take(chunk)])]
                    elif name.startswith("pg x2"):
                        targets = [(p1, [build.v2(o) for o in p1.take(half)]),
                                   (p2, [build.v2(o) for o in p2.take(half)])]  # fmt: skip
                        if name == "pg x2":
                            per = max(1, args.concurrency // 2)  # the same connections in all
                    else:
                        targets = [(p1, [build.v2(o) for o in p1.take(chunk)])]
                    if name == "pg no notify":
                        with pg.begin() as conn:
                            conn.exec_driver_sql(
                                "ALTER TABLE orders DISABLE TRIGGER scanpay_orders_changed"
                            )
                    burner = None
                    if name == "pg burner":
                        burner = await asyncio.create_subprocess_exec(
                            sys.executable, "-c", BURNER, str(args.burn_share)
                        )
                    try:
                        count, seconds, cpu, server = await send(targets, per, probe)
                    finally:
                        if burner is not None:
                            burner.kill()
                            await burner.wait()
                    if name == "pg no notify":
                        with pg.begin() as conn:
                            conn.exec_driver_sql(
                                "ALTER TABLE orders ENABLE TRIGGER scanpay_orders_changed"
                            )
                    tallies[name].add(count, seconds, cpu, server)
                if "pg" in tallies and "sqlite" in tallies:
                    ratios.append(tallies["pg"].rates[-1] / tallies["sqlite"].rates[-1])

            cross = await latency(p2, p1, p1.take(args.latency_orders), build)
            local = await latency(p1, p1, p1.take(args.latency_orders), build)
            per_batch, other = await round_trips(pg_url, creds, sim_url, build, args.trip_orders)
    finally:
        for process in reversed(processes):
            stop(process)
        pg.dispose()

    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{rounds} rounds of {chunk} notifications per configuration, "
          f"{args.concurrency} connections")  # fmt: skip
    print(f"{'configuration':<34} {'notify/s':>8} {'CPU ms/notification: scanpay':>29}"
          f" {'PostgreSQL':>10} {'sum':>6} {'write transactions/notification':>32}")  # fmt: skip
    labels = {
        "sqlite": "1 instance, SQLite",
        "pg": "1 instance, PostgreSQL",
        "pg x2": "2 instances, PG (same connections)",
        "pg x2 full": "2 instances, PG (as many each)",
        "pg no notify": "1 instance, PG, no NOTIFY",
        "pg burner": "1 instance, PG, beside a CPU burner",
    }
    for name, t in tallies.items():
        server = t.server_ms if name != "sqlite" else 0.0
        commits = f"{t.commits / t.notifications:.3f}" if name != "sqlite" else "-"  # (32)
        print(f"{labels[name]:<34} {t.rate:>8.0f} {t.cpu_ms:>29.3f} {server:>10.3f}"
              f" {t.cpu_ms + server:>6.3f} {commits:>32}")  # fmt: skip
    if ratios:
        print(f"PostgreSQL / SQLite (one instance): "
              f"{tallies['pg'].rate / tallies['sqlite'].rate:.2f}"
              f" overall, per-round median {statistics.median(ratios):.2f}"
              f" ({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"in-process path, {args.trip_orders} notifications 8 at a time: {per_batch:.1f}"
          f" notifications per transaction, so {2 / per_batch:.2f} round trips per notification"
          f" (2 per batch); {other:.2f} other statements per notification")  # fmt: skip
    for label, values in (
        ("stream on B, settled on A", cross),
        ("stream on A, settled on A", local),
    ):
        print(f"{label}: p50 {statistics.median(values):.1f} ms, p90 {percentile(values, 90):.1f},"
              f" p99 {percentile(values, 99):.1f}, max {max(values):.1f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk", type=int, default=300, help="notifications per timed chunk")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of all configurations")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in flight")
    parser.add_argument("--latency-orders", type=int, default=200, help="streams timed")
    parser.add_argument("--trip-orders", type=int, default=200, help="in-process notifications")
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts")
    parser.add_argument(
        "--burn-share",
        type=float,
        default=0.75,
        help="pg burner: the share of one core the burner keeps busy (0-1)",
    )
    parser.add_argument(
        "--configurations",
        type=lambda text: [name.strip() for name in text.split(",")],
        default=NAMES,
        help=f"comma-separated subset of: {', '.join(NAMES)}",
    )
    args = parser.parse_args()
    if not 0 < args.burn_share <= 1:
        parser.error("--burn-share must be in (0, 1]")
    unknown = set(args.configurations) - set(NAMES)
    if unknown or not args.configurations:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    if args.quick:
        args.chunk, args.rounds, args.latency_orders, args.trip_orders = 60, 2, 20, 40
    server = postgres_server()
    db_name = "scanpay_bench_" + secrets.token_hex(4)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
    pg_url = sa.make_url(server).set(database=db_name).render_as_string(False)
    try:
        subprocess.run([str(SCANPAY), "db", "upgrade", "--database-url", pg_url], check=True,
                       capture_output=True)  # fmt: skip
        asyncio.run(main_async(args, pg_url))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
