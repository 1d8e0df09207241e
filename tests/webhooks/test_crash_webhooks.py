"""200 orders paid while ``scanpay serve`` is SIGKILLed at random moments and
restarted: the receiver gets every ``order.paid`` at least once and, deduplicated by
``webhook-id``, exactly once, each verified by ``standardwebhooks`` and scanpay's helper;
each order's events arrive in the order they happened. Real processes and real HTTP: the
service (subprocess, SQLite file), the simulator and the receiver on loopback threads."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.webhooks.signing import generate_secret
from tests.service_env import FAST_RECONCILER, service_env
from tests.simulator.live import free_port, serve_simulator
from tests.web.test_crash import SHOP_KEY, Service, _call, create_order, kill_at_random
from tests.webhooks.receiver import check_signed, serve_receiver

ORDERS = 200
KILLS = 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_during_payments_every_order_paid_arrives(tmp_path: Path) -> None:
    rnd = random.Random(11)
    secret = generate_secret()
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    with serve_receiver() as receiver, serve_simulator() as (sim, sim_url):
        port = free_port()
        env = service_env(
            f"sqlite:///{tmp_path / 'shop.sqlite3'}", sim.credentials, sim_url,
            shop_key=SHOP_KEY, public_url=f"http://127.0.0.1:{port}", **FAST_RECONCILER,
            webhook_url=receiver.url, webhook_secret=secret,
            webhook_allow_private="true", webhook_poll_seconds="0.2", webhook_lease_seconds="2",
        )  # fmt: skip
        svc = Service(env, port)
        svc.start()
        try:
            stop = threading.Event()

            def one(i: int) -> str:
                order = create_order(svc, f"wh-crash-{i}", 100 + i)
                pay = httpx.post(f"{sim_url}/sim/pay", json={"code_url": order["code_url"]})
                assert pay.status_code == 200, pay.text
                return str(order["id"])

            # a few kills at random moments while orders are paid (each restart costs seconds
            # of imports on a loaded machine, so their number is bounded)
            thread = threading.Thread(
                target=kill_at_random, args=(svc, rnd, stop, (1.0, 3.0), KILLS), daemon=True
            )
            thread.start()
            with ThreadPoolExecutor(8) as pool:
                made = list(pool.map(one, range(ORDERS)))
            paid = set(made)
            stop.set()
            thread.join()
            assert svc.kills >= 3

            def arrived() -> dict[str, dict[str, Any]]:
                with receiver.lock:
                    return {m.id: m.json for m in receiver.received}

            deadline = time.monotonic() + 180  # a bound, not a timing claim
            while time.monotonic() < deadline:
                events = arrived().values()
                got_paid = {e["data"]["id"] for e in events if e["type"] == "order.paid"}
                if got_paid >= paid:
                    break
                time.sleep(0.3)
            messages = list(receiver.received)
            # every order.paid arrived; deduplicated by id, exactly once per order
            unique = arrived()
            per_order = defaultdict(list)
            for event_id, event in unique.items():
                if event["type"] == "order.paid":
                    per_order[event["data"]["id"]].append(event_id)
            assert set(per_order) == paid
            assert all(len(ids) == 1 for ids in per_order.values())
            check_signed(messages, secret)
            # each order's events arrived in the order the events API lists them
            listed: list[dict[str, Any]] = []
            cursor = "0"
            while True:
                page = _call(httpx.get, f"{svc.url}/api/events?after={cursor}&limit=100",
                             headers=auth).json()  # fmt: skip
                listed += page["items"]
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
            expected: dict[str, list[str]] = defaultdict(list)
            for event in listed:
                order_id = event["data"].get("order_id", event["data"]["id"])
                expected[order_id].append(event["id"])
            first_seen: dict[str, list[str]] = defaultdict(list)
            for message in messages:
                body = message.json
                order_id = body["data"].get("order_id", body["data"]["id"])
                if message.id not in first_seen[order_id]:
                    first_seen[order_id].append(message.id)
            assert dict(first_seen) == dict(expected)
            duplicates = len(messages) - len(unique)
            print(f"kills={svc.kills} deliveries={len(messages)} duplicates={duplicates}")
        finally:
            svc.stop()
