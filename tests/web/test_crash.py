"""SIGKILL the service at random moments while payments run; restart it; nothing is lost
and nothing counted twice. Real processes: ``scanpay serve`` (subprocess, SQLite file) and
the simulator (uvicorn on loopback in a thread), talking real HTTP both ways."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scanpay.domain.model import PaymentAttempt
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.store.migrate import make_engine
from scanpay.store.sql import SqlStore
from tests.service_env import FAST_RECONCILER, service_env
from tests.simulator.live import free_port, serve_simulator

SHOP_KEY = "crash-test-shop-key-0123456789"
ORDERS = 16
WINDOW_SECONDS = 360  # the shortest window the service allows (WeChat: >= 5 min ahead)


class Service:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scanpay.cli.main", "serve", "--port", str(self.port),
             "--log-level", "warning"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120  # generous: the machine may be loaded
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the service did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def running_service(
    tmp_path: Path, sim_url: str, creds: MerchantCredentials, port: int | None = None
) -> Iterator[Service]:
    port = port or free_port()
    env = service_env(
        f"sqlite:///{tmp_path / 'shop.sqlite3'}", creds, sim_url, shop_key=SHOP_KEY,
        public_url=f"http://127.0.0.1:{port}", **FAST_RECONCILER,
        # the shortest window: the test waits it out to see expiry after kills
        payment_window_seconds=str(WINDOW_SECONDS),
        order_deadline_seconds=str(WINDOW_SECONDS),
    )  # fmt: skip
    service = Service(env, port)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def _call(fn: object, *args: object, **kwargs: object) -> httpx.Response:
    """Retry while the service is down (it is being killed on purpose; a restart on a loaded
    machine can take a while, so the bound is generous)."""
    deadline = time.monotonic() + 180
    while True:
        try:
            return fn(*args, timeout=3, **kwargs)  # type: ignore[operator,no-any-return]
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def create_order(svc: Service, key: str, amount: int) -> dict[str, Any]:
    """``POST /api/orders`` with Idempotency-Key ``key`` until the answer has a code_url (an
    order whose service was killed before WeChat was reached has none: the same key again)."""
    headers = {"Idempotency-Key": key, "Authorization": f"Bearer {SHOP_KEY}"}
    body = {"amount": amount, "description": "Tea"}
    for _ in range(100):
        answer = _call(httpx.post, f"{svc.url}/api/orders", json=body, headers=headers)
        if answer.status_code in (200, 201) and answer.json().get("code_url"):
            order: dict[str, Any] = answer.json()
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {key} never got a code_url: {answer.status_code} {answer.text}")


def kill_at_random(
    svc: Service, rnd: random.Random, stop: threading.Event, pause: tuple[float, float],
    most: int | None = None,
) -> None:  # fmt: skip
    """Until ``stop`` is set (or ``most`` kills): SIGKILL the service after a random pause of
    ``pause`` seconds, start it again 0 to 0.3 s later."""
    while not stop.is_set() and (most is None or svc.kills < most):
        time.sleep(rnd.uniform(*pause))
        if stop.is_set():
            break
        svc.kill()
        time.sleep(rnd.uniform(0.0, 0.3))
        svc.start()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_during_payments_loses_nothing(tmp_path: Path) -> None:
    rnd = random.Random(5)
    with (
        serve_simulator() as (sim, sim_url),
        running_service(tmp_path, sim_url, sim.credentials) as svc,
    ):
        stop = threading.Event()
        thread = threading.Thread(
            target=kill_at_random, args=(svc, rnd, stop, (0.3, 1.2)), daemon=True
        )
        thread.start()
        paid: dict[str, str] = {}
        unpaid: list[str] = []  # every 4th order is left for the reconciler to look after
        i = 0
        # at least ORDERS payments, and keep paying until the service was killed 3 times
        while i < ORDERS or (svc.kills < 3 and i < 20 * ORDERS):
            order = create_order(svc, f"crash-{i}", 100 + i)
            i += 1
            if i % 4 == 0:
                unpaid.append(order["id"])
                continue
            pay = httpx.post(f"{sim_url}/sim/pay", json={"code_url": order["code_url"]})
            assert pay.status_code == 200, pay.text
            paid[order["id"]] = order["out_trade_no"]
        stop.set()
        thread.join()
        assert svc.kills >= 3
        deadline = time.monotonic() + 180  # a bound, not a timing claim
        pending = set(paid)
        while pending and time.monotonic() < deadline:
            for order_id in list(pending):
                if _call(httpx.get, f"{svc.url}/api/orders/{order_id}").json()["status"] == "paid":
                    pending.discard(order_id)
            time.sleep(0.2)
        assert not pending, f"{len(pending)} paid orders not paid after restarts"
        engine = sa.create_engine(svc.env["SCANPAY_DATABASE_URL"])
        with engine.connect() as conn:
            per_order: dict[str, int] = dict(
                conn.execute(
                    sa.text(
                        "SELECT order_id, count(*) FROM events WHERE type='paid' GROUP BY order_id"
                    )
                ).all()
            )
            alerts = conn.execute(
                sa.text("SELECT count(*) FROM events WHERE type='alert'")
            ).scalar()
        engine.dispose()
        assert {oid: per_order.get(oid) for oid in paid} == dict.fromkeys(paid, 1)
        assert alerts == 0
        assert unpaid
        assert all(
            _call(httpx.get, f"{svc.url}/api/orders/{oid}").json()["status"] == "pending"
            for oid in unpaid
        )

        # Now the unpaid ones run out of time. Kill the service just before the last window
        # ends and start it again only after: the restarted process must close every expired
        # attempt at WeChat and expire its order; nothing may stay pending past its expiry.
        attempts = _attempts(svc)
        last_expiry = max(a.expires_at for a in attempts if a.open and a.expires_at)
        _sleep_until(last_expiry, -5)
        svc.kill()
        _sleep_until(last_expiry, 5)
        svc.start()
        deadline = time.monotonic() + 120  # a bound, not a timing claim
        while time.monotonic() < deadline:
            if all(
                _call(httpx.get, f"{svc.url}/api/orders/{oid}").json()["status"] == "expired"
                for oid in unpaid
            ):
                break
            time.sleep(0.5)
        attempts = _attempts(svc)
        now = datetime.now(UTC)
        assert [a.out_trade_no for a in attempts if a.open and a.expired(now)] == []
        for oid in unpaid:
            assert _call(httpx.get, f"{svc.url}/api/orders/{oid}").json()["status"] == "expired"
        for attempt in attempts:
            if attempt.order_id in unpaid:
                ledger = httpx.get(f"{sim_url}/sim/orders/{attempt.out_trade_no}").json()
                assert ledger["trade_state"] == "CLOSED", ledger
        assert {oid: per_order.get(oid) for oid in paid} == dict.fromkeys(paid, 1)


def _attempts(svc: Service) -> list[PaymentAttempt]:
    store = SqlStore(make_engine(svc.env["SCANPAY_DATABASE_URL"]))
    try:
        return store.attempts_sync()
    finally:
        store.close()


def _sleep_until(moment: datetime, offset_seconds: float) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds() + offset_seconds
    if delay > 0:
        time.sleep(delay)
