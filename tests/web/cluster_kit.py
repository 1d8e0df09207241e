"""A real cluster on loopback for tests and benchmarks: N ``scanpay serve`` processes on one
PostgreSQL database behind HAProxy (deploy/haproxy.cfg with the ports changed), the simulator
served in this process with a recorder of the WeChat API calls it answers, and a small SSE
client that reconnects with ``Last-Event-ID`` as a browser's EventSource does."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scanpay.simulator import Simulator
from tests.databases import scratch_postgres
from tests.service_env import service_env
from tests.simulator.live import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy.cfg"
SHOP_KEY = "cluster-test-shop-key-0123456789"
START_SECONDS = 120.0  # a bound for a loaded machine, not a timing claim


def haproxy_config(port: int, servers: dict[str, int], *, stats_port: int | None = None) -> str:
    """deploy/haproxy.cfg with its ``bind`` and ``server`` lines for these loopback ports."""
    text = HAPROXY_TEMPLATE.read_text()
    text = re.sub(r"(?m)^    bind 127\.0\.0\.1:\d+$", f"    bind 127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^    server .*\n", "", text)
    lines = "".join(f"    server {name} 127.0.0.1:{p} check\n" for name, p in servers.items())
    text = text.rstrip("\n") + "\n" + lines
    if stats_port is not None:
        text += f"\nlisten stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n"
        text += "    stats uri /stats\n"
    return text


def rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows ``sql`` finds in the database at ``database_url`` (an engine of its own)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


# ---- the simulator, with a record of the API calls it answered ----------------------------


@dataclass(frozen=True)
class Call:
    path: str
    out_trade_no: str
    started: float
    ended: float


class CallRecorder:
    """ASGI middleware: every ``/pay/...`` (v2 API) call with its ``out_trade_no`` and when
    it started and ended (monotonic seconds)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/pay/", "/secapi/")):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        try:
            await self.app(scope, recording_receive, send)
        finally:
            found = re.search(rb"<out_trade_no>(?:<!\[CDATA\[)?([^<\]]+)", b"".join(chunks))
            number = found.group(1).decode() if found else ""
            with self._lock:
                self.calls.append(Call(scope["path"], number, started, time.monotonic()))

    def of(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]


@contextmanager
def serve_recorded_simulator() -> Iterator[tuple[Simulator, str, CallRecorder]]:
    sim = Simulator.create()
    recorder = CallRecorder(sim.app)
    try:
        with serve_asgi(recorder, "sim-uvicorn", lifespan="on") as url:
            sim.public_url = url
            yield sim, url, recorder
    finally:
        sim.close()


# ---- the instances and the balancer --------------------------------------------------------


class Instance:
    """One ``scanpay serve`` process (its log in ``log_path``)."""

    def __init__(self, name: str, port: int, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**env, "SCANPAY_INSTANCE_NAME": name}
        self.log_path = folder / f"instance-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scanpay.cli.main", "serve", "--port", str(self.port),
                 "--log-level", "warning"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance {self.name} exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"instance {self.name} did not become ready")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait())

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (the graceful drain) and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.exit_codes.append(code)
        return code

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


class Balancer:
    """HAProxy in the foreground (``-db``), its log (``option httplog``) in a file."""

    def __init__(self, folder: Path, servers: dict[str, int]) -> None:
        self.port = free_port()
        self.stats_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, servers, stats_port=self.stats_port))
        self.log_path = folder / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    def server_states(self) -> dict[str, str]:
        """``{server: UP|DOWN|...}`` from the stats page (CSV)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text
        states = {}
        for line in text.splitlines():
            cells = line.split(",")
            if len(cells) > 17 and cells[0] == "scanpay_instances" and cells[1] != "BACKEND":
                states[cells[1]] = cells[17]
        return states

    def wait_up(self, name: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while self.server_states().get(name) != "UP":
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy never saw {name} up")
            time.sleep(0.1)

    def requests(self, path_prefix: str) -> dict[str, int]:
        """Requests per server whose path starts with ``path_prefix`` (from the log)."""
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            found = re.search(r' scanpay_instances/(\w+) .*"(?:GET|POST) (\S+)', line)
            if found and found.group(2).startswith(path_prefix):
                counts[found.group(1)] = counts.get(found.group(1), 0) + 1
        return counts

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Cluster:
    database_url: str
    sim: Simulator
    sim_url: str
    recorder: CallRecorder
    instances: dict[str, Instance]
    balancer: Balancer
    auth: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {SHOP_KEY}"})

    @property
    def url(self) -> str:
        return self.balancer.url

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return rows(self.database_url, sql, **params)

    def restart(self, name: str) -> int:
        """Graceful stop (SIGTERM), start again, wait until HAProxy sends it traffic."""
        instance = self.instances[name]
        code = instance.terminate()
        instance.start()
        instance.wait_ready()
        self.balancer.wait_up(name)
        return code


def instance_env(
    database_url: str, public_url: str, sim: Simulator, sim_url: str, **settings: str
) -> dict[str, str]:
    """The environment of a cluster's instance; ``settings`` (by field name) add to what it
    sets or replace it."""
    cluster = {
        "migrate_on_startup": "false",  # `scanpay db upgrade` ran first, as documented
        "wechat_timeout_seconds": "5",
        "query_first_delay_seconds": "3",
        "query_max_delay_seconds": "3",
        "reconciler_poll_seconds": "0.2",
        "reconciler_lease_seconds": "3",
        "reconciler_batch": "5",
        # the safety-net poll out of reach during a run: streams learn of changes made on
        # other instances through LISTEN/NOTIFY only
        "stream_poll_seconds": "120",
        "sse_heartbeat_seconds": "5",
        "shutdown_grace_seconds": "5",
        "database_pool_size": "4",
    }
    return service_env(database_url, sim.credentials, sim_url, shop_key=SHOP_KEY,
                       public_url=public_url, **(cluster | settings))  # fmt: skip


def start_behind(balancer: Balancer, instances: dict[str, Instance]) -> None:
    """Start the instances side by side and wait until each is ready, then HAProxy, until it
    sees every one of them up."""
    for instance in instances.values():
        instance.start()
    for instance in instances.values():
        instance.wait_ready()
    balancer.start()
    for name in instances:
        balancer.wait_up(name)


@contextmanager
def running_cluster(
    postgres_url: str, folder: Path, names: tuple[str, ...] = ("a", "b", "c")
) -> Iterator[Cluster]:
    """A fresh database on the server at ``postgres_url``, upgraded with ``scanpay db
    upgrade``; the simulator; the instances; HAProxy. Everything is stopped afterwards."""
    instances: dict[str, Instance] = {}
    balancer: Balancer | None = None
    with fresh_database(postgres_url) as database_url:
        try:
            subprocess.run(
                [sys.executable, "-m", "scanpay.cli.main", "db", "upgrade", "--database-url",
                 database_url],
                check=True, capture_output=True,
            )  # fmt: skip
            with serve_recorded_simulator() as (sim, sim_url, recorder):
                ports = {name: free_port() for name in names}
                balancer = Balancer(folder, ports)
                env = instance_env(database_url, balancer.url, sim, sim_url)
                instances = {
                    name: Instance(name, port, env, folder) for name, port in ports.items()
                }
                start_behind(balancer, instances)
                yield Cluster(database_url, sim, sim_url, recorder, instances, balancer)
        finally:
            if balancer is not None:
                balancer.stop()
            for instance in instances.values():
                instance.stop()


@contextmanager
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``postgres_url`` (its URL), dropped afterwards."""
    with scratch_postgres("scanpay_cluster_", postgres_url) as url:
        yield url


# ---- a status stream client that behaves like EventSource ----------------------------------


@dataclass
class StreamLog:
    """What one EventSource-like client saw: messages (id, payload) across reconnections."""

    order_id: str
    base_url: str
    messages: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    connections: int = 0
    resumed_from: list[int] = field(default_factory=list)  # Last-Event-ID sent on reconnects
    drained: int = 0  # streams the server ended with the drain's retry hint
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def types(self) -> list[str]:
        return [str(payload["type"]) for _, payload in self.messages]


def follow(log: StreamLog, stop: threading.Event, deadline_seconds: float = 240) -> None:
    """Read the stream until the order is settled, reconnecting (after the server's
    ``retry:`` pause, or at once after a broken connection) with ``Last-Event-ID``."""
    deadline = time.monotonic() + deadline_seconds
    retry_ms = 2000
    try:
        with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                headers = {"Accept": "text/event-stream"}
                if log.messages:
                    headers["Last-Event-ID"] = str(log.messages[-1][0])
                    log.resumed_from.append(log.messages[-1][0])
                log.connections += 1
                pause = 0.1
                try:
                    url = f"{log.base_url}/api/orders/{log.order_id}/events"
                    with client.stream("GET", url, headers=headers) as response:
                        if response.status_code != 200:
                            raise httpx.HTTPStatusError(
                                str(response.status_code), request=response.request,
                                response=response,
                            )  # fmt: skip
                        block: list[str] = []
                        for line in response.iter_lines():
                            if line:
                                block.append(line)
                                continue
                            settled = _take(log, block)
                            for entry in block:
                                if entry.startswith("retry:"):
                                    retry_ms = int(entry.split(":", 1)[1])
                            if ": draining, reconnect" in block:
                                log.drained += 1
                            block = []
                            if settled:
                                return
                    pause = retry_ms / 1000  # ended by the server: EventSource waits `retry`
                except httpx.HTTPError:
                    pause = 0.2
                time.sleep(pause)
            log.error = "deadline"
    finally:
        log.done.set()


def _take(log: StreamLog, block: list[str]) -> bool:
    """Record one SSE message; True when it says the order is settled."""
    fields = dict(line.split(": ", 1) for line in block if ": " in line and line[0] != ":")
    if "data" not in fields:
        return False
    payload = json.loads(fields["data"])
    log.messages.append((int(fields["id"]), payload))
    return bool(payload["status"] != "pending")


def open_streams(base_url: str, order_ids: list[str], stop: threading.Event) -> list[StreamLog]:
    logs = [StreamLog(order_id, base_url) for order_id in order_ids]
    for log in logs:
        threading.Thread(target=follow, args=(log, stop), daemon=True).start()
    return logs
