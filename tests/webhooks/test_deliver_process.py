"""``scanpay deliver``: webhooks delivered by processes of their own beside a ``scanpay serve``
that runs with ``SCANPAY_WEBHOOKS_ENABLED=false``. Real processes on a real database (SQLite
file, PostgreSQL), the simulator over HTTP, a real receiver on loopback; every message checked
by ``standardwebhooks`` and scanpay's helper."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scanpay.store.migrate import make_engine, upgrade
from scanpay.webhooks import deliver
from scanpay.webhooks.signing import generate_secret
from tests.databases import scratch_postgres
from tests.service_env import child_environ, service_env
from tests.simulator.live import free_port, serve_simulator
from tests.web.test_crash import SHOP_KEY, Service
from tests.webhooks.receiver import Receiver, check_signed, serve_receiver

AUTH = {"Authorization": f"Bearer {SHOP_KEY}"}
# long: a delivery process that hears of new events only through its poll would be seen late
POLL_SECONDS = "30"


class Deliver:
    """One ``scanpay deliver`` process, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scanpay.cli.main", "deliver", "--log-level", "info"],
                env=env, stdout=subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip

    def wait_running(self) -> None:
        deadline = time.monotonic() + 120  # generous: imports on a loaded machine
        while "deliver: running" not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, "scanpay deliver did not start"
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def stack(tmp_path: Path, db_url: str) -> Iterator[tuple[Service, Receiver, str, str, Any]]:
    with serve_receiver() as receiver, serve_simulator() as (sim, sim_url):
        port = free_port()
        secret = generate_secret()
        env = service_env(
            db_url, sim.credentials, sim_url, shop_key=SHOP_KEY,
            public_url=f"http://127.0.0.1:{port}", reconciler_enabled="false",
            webhook_url=receiver.url, webhook_secret=secret, webhook_allow_private="true",
            webhook_retry_schedule="0,0.2,0.2,0.2", webhook_poll_seconds=POLL_SECONDS,
            webhook_lease_seconds="4",  # the SIGKILL phase waits it out
            webhooks_enabled="false",  # the API instance; deliver ignores it
        )  # fmt: skip
        svc = Service(env, port)
        svc.start()
        try:
            yield svc, receiver, sim_url, secret, env
        finally:
            svc.stop()


def pay(svc: Service, sim_url: str, count: int, tag: str) -> list[str]:
    def one(i: int) -> str:
        key = {"Idempotency-Key": f"{tag}-{i}", **AUTH}
        answer = httpx.post(f"{svc.url}/api/orders", json={"amount": 100 + i,
                            "description": "Tea"}, headers=key, timeout=30)  # fmt: skip
        assert answer.status_code in (200, 201), answer.text
        order = answer.json()
        paid = httpx.post(f"{sim_url}/sim/pay", json={"code_url": order["code_url"]}, timeout=30)
        assert paid.status_code == 200, paid.text
        return str(order["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def paid_ids(receiver: Receiver) -> Counter[str]:
    """order id -> how many distinct ``order.paid`` event ids arrived for it."""
    with receiver.lock:
        unique = {m.id: m.json for m in receiver.received}
    return Counter(e["data"]["id"] for e in unique.values() if e["type"] == "order.paid")


def wait_paid(receiver: Receiver, orders: list[str], within: float = 90.0) -> None:
    deadline = time.monotonic() + within  # a bound, not a timing claim
    while not set(orders) <= set(paid_ids(receiver)):
        assert time.monotonic() < deadline, "not every order.paid arrived"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_delivery_processes_beside_serve_sqlite(tmp_path: Path) -> None:
    two_delivery_processes(tmp_path, f"sqlite:///{tmp_path / 'shop.sqlite3'}")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(400)
def test_two_delivery_processes_beside_serve_postgres(tmp_path: Path) -> None:
    """The same on PostgreSQL, where a delivery process takes new deliveries into batches:
    the SIGKILLed one's batches are written out as rows once their lease runs out."""
    with scratch_postgres("deliver_two_") as db_url:
        two_delivery_processes(tmp_path, db_url)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_killed_delivery_process_batches_are_delivered_by_another(tmp_path: Path) -> None:
    """PostgreSQL: a delivery process SIGKILLed while its batch's webhooks are in flight
    (no row written for any yet); another process, started afterwards, writes the batch
    out as rows once its lease has run out and delivers every one."""
    with scratch_postgres("deliver_batch_") as db_url, stack(tmp_path, db_url) as (
        svc, receiver, sim_url, secret, env
    ):  # fmt: skip
        victim = Deliver(env, tmp_path / "victim.log")
        heir: Deliver | None = None
        try:
            victim.wait_running()
            receiver.delay = 1.0  # each webhook in flight for a second
            orders = pay(svc, sim_url, 6, "batch")
            deadline = time.monotonic() + 60
            while receiver.arriving < 1:
                assert time.monotonic() < deadline, "no delivery started"
                time.sleep(0.01)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            with svc_db(db_url) as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar()
            receiver.delay = 0.0
            # (its poll finds the expired batch: the LISTEN wakes only for new events)
            heir = Deliver({**env, "SCANPAY_WEBHOOK_POLL_SECONDS": "0.5"}, tmp_path / "heir.log")
            heir.wait_running()
            wait_paid(receiver, orders)  # (the victim's requests arrived: no answer was read)
            deadline = time.monotonic() + 60
            while delivered(db_url) < len(orders):  # ... the heir's are recorded
                assert time.monotonic() < deadline, "the killed process's batch was not sent"
                time.sleep(0.1)
            assert "stopped renewing" in heir.text()
            with svc_db(db_url) as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar() == 0
            with receiver.lock:
                messages = list(receiver.received)
            check_signed(messages, secret)
            assert paid_ids(receiver) == dict.fromkeys(orders, 1)  # the same event ids again
        finally:
            victim.stop()
            if heir is not None:
                heir.stop()


def delivered(url: str) -> int:
    with svc_db(url) as conn:
        query = "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
        return int(conn.execute(sa.text(query)).scalar_one())


@contextmanager
def svc_db(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def two_delivery_processes(tmp_path: Path, db_url: str) -> None:
    with stack(tmp_path, db_url) as (svc, receiver, sim_url, secret, env):
        # the API instance with its worker off writes events but delivers nothing
        early = pay(svc, sim_url, 4, "early")
        time.sleep(1.0)
        assert receiver.arriving == 0
        a = Deliver(env, tmp_path / "a.log")
        b = Deliver(env, tmp_path / "b.log")
        try:
            a.wait_running()
            b.wait_running()
            # ... and each of those events is delivered once a delivery process runs
            wait_paid(receiver, early)
            # normal case: two processes side by side deliver every webhook exactly once
            normal = pay(svc, sim_url, 24, "normal")
            wait_paid(receiver, normal)
            time.sleep(0.5)  # anything sent twice would have arrived by now
            with receiver.lock:
                ids = Counter(m.id for m in receiver.received)
            assert ids
            assert max(ids.values()) == 1, ids.most_common(3)
            assert all(paid_ids(receiver)[o] == 1 for o in early + normal)
            # woken by the watch, not the 30 s poll: the 24 arrived while this test ran
            # a SIGKILL of one mid-run loses nothing (at least once; its leases run out)
            receiver.delay = 0.2
            seen = receiver.arriving
            paying: list[list[str]] = []
            thread = threading.Thread(target=lambda: paying.append(pay(svc, sim_url, 20, "kill")))
            thread.start()
            deadline = time.monotonic() + 60
            while receiver.arriving < seen + 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            thread.join()
            receiver.delay = 0.0
            wait_paid(receiver, paying[0])
            counts = paid_ids(receiver)
            assert all(counts[o] == 1 for o in paying[0])  # deduplicated by id: once each
            # SIGTERM drains: the deliveries in flight finish and are recorded
            receiver.delay = 1.0
            seen = receiver.arriving
            last = pay(svc, sim_url, 3, "drain")
            deadline = time.monotonic() + 60
            while receiver.arriving < seen + 1:
                assert time.monotonic() < deadline, "no delivery started"
                time.sleep(0.01)
            b.proc.send_signal(signal.SIGTERM)
            assert b.proc.wait(30) == 0
            assert "finishing" in b.text()
            assert "deliver: stopped" in b.text()
            with receiver.lock:
                in_flight = receiver.received[-(receiver.arriving - seen) :]
            assert in_flight
            for message in in_flight:
                detail = httpx.get(f"{svc.url}/api/events/{message.id}", headers=AUTH).json()
                statuses = {d["status"] for d in detail["deliveries"]}
                assert statuses == {"delivered"}, detail
            # (the window may also hold a webhook of the SIGKILL phase sent again once the dead
            # process's lease ran out: recorded as delivered all the same)
            assert {m.json["data"]["id"] for m in in_flight} & set(last)
            with receiver.lock:
                messages = list(receiver.received)
            check_signed(messages, secret)
            for log in (a.text(), b.text()):
                assert secret not in log
                assert SHOP_KEY not in log
                assert "webhook delivered" in log  # both took part
        finally:
            a.stop()
            b.stop()


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_deliver_on_postgres_hears_new_events_by_listen(tmp_path: Path) -> None:
    with scratch_postgres("deliver_") as db_url, stack(tmp_path, db_url) as (
        svc, receiver, sim_url, secret, env
    ):  # fmt: skip
        deliver = Deliver(env, tmp_path / "d.log")
        try:
            deliver.wait_running()
            assert "LISTEN scanpay_orders" in deliver.text()
            # one at a time: each arrives long before the 30 s poll would have found it
            for n in range(4):
                began = time.monotonic()
                order = pay(svc, sim_url, 1, f"pg-{n}")
                wait_paid(receiver, order, within=15.0)
                assert time.monotonic() - began < 15.0
            with receiver.lock:
                messages = list(receiver.received)
            check_signed(messages, secret)
            deliver.proc.send_signal(signal.SIGTERM)
            assert deliver.proc.wait(30) == 0
            assert secret not in deliver.text()
        finally:
            deliver.stop()


def test_deliver_refuses_bad_settings_clearly(tmp_path: Path) -> None:
    base = {
        **child_environ(),
        "SCANPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "SCANPAY_SHOP_API_KEY": SHOP_KEY,
        "SCANPAY_APPID": "wx0000000000000000",
        "SCANPAY_MCHID": "1900000000",
        "SCANPAY_API_V2_KEY": "k" * 32,
    }
    password = "Pw-" + generate_secret()[6:20]
    cases = {
        "SCANPAY_WEBHOOK_WATCH_SECONDS": ({"SCANPAY_WEBHOOK_WATCH_SECONDS": "0"},
                                          "SCANPAY_WEBHOOK_WATCH_SECONDS"),
        "memory": ({"SCANPAY_DATABASE_URL": "sqlite:///:memory:"},
                   "SCANPAY_DATABASE_URL: use a SQLite file"),
        "scheme": ({"SCANPAY_DATABASE_URL": "nosuch://db"}, "not a database URL"),
        "unreachable": (
            {"SCANPAY_DATABASE_URL": f"postgresql+psycopg://shop:{password}@127.0.0.1:1/shop"},
            "cannot use the database",
        ),
        "secret": ({"SCANPAY_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                    "SCANPAY_WEBHOOK_SECRET": "whsec_" + password}, "webhook secret is whsec_"),
    }  # fmt: skip
    command = [sys.executable, "-m", "scanpay.cli.main", "deliver"]
    procs = {}
    for name, (extra, _) in cases.items():  # side by side: each is mostly imports
        procs[name] = subprocess.Popen(command, env={**base, **extra}, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)  # fmt: skip
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        text = (out + err).decode()
        assert proc.returncode == 2, (name, text)
        assert cases[name][1] in text, (name, text)
        assert "Traceback" not in text, (name, text)
        assert password not in text, (name, text)


@pytest.mark.parametrize("mode", ["inotify", "poll"])
async def test_sqlite_watch_hears_commits_of_another_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The watch of ``scanpay deliver`` on SQLite: inotify on the write-ahead log (Linux) and
    the polling it falls back to elsewhere both report events committed by another
    connection, and nothing while the database is idle."""
    if mode == "poll":  # what a system without inotify gets
        monkeypatch.setattr(deliver, "_inotify", lambda _folder: None)
    path = tmp_path / "shop.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    heard = asyncio.Event()
    watch = deliver.SqliteWatch(str(path), heard.set, 0.01)
    await watch.start()
    try:
        assert watch.mode == mode
        await asyncio.sleep(0.2)
        assert not heard.is_set()
        for seq in range(3):
            heard.clear()
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO events (order_id, seq, type, data, created_at) "
                                     "VALUES (NULL, :seq, 'alert.raised', '{}', "
                                     "'2026-12-03 12:00:00')"), {"seq": seq})  # fmt: skip
            await asyncio.wait_for(heard.wait(), 10)
        heard.clear()
        await asyncio.sleep(0.2)
        assert not heard.is_set()  # a read that finds nothing new reports nothing
    finally:
        await watch.stop()
        engine.dispose()
