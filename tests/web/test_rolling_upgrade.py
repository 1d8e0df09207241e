"""Issue 13's rolling upgrade with two real versions of scanpay side by side.

The older version is this repository's own code at ``OLD_COMMIT`` (main just before migration
0013, the query log, landed: its schema head is 0012), taken out of git history with
``git archive`` and run from the same virtual environment with ``PYTHONPATH`` pointing at it.
The procedure is the one docs/deployment.md documents: old instances serve one PostgreSQL
behind HAProxy while a shop creates and pays orders; the new version runs ``scanpay db
upgrade`` (an expand-only migration) while the old instances keep serving; the instances are
then replaced one by one (SIGTERM drain, start the new version, wait for ``/readyz`` and for
HAProxy to send it traffic). No shop call may fail for good (a retry with the same
Idempotency-Key is allowed), every order is paid exactly once, and an old instance started
after the upgrade refuses the newer schema with its clear message.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.store.migrate import known_revisions
from tests.service_env import child_environ
from tests.simulator.live import free_port
from tests.store.conftest import POSTGRES_URL
from tests.web.cluster_kit import (
    ROOT,
    SHOP_KEY,
    Balancer,
    Instance,
    fresh_database,
    instance_env,
    open_streams,
    rows,
    serve_recorded_simulator,
    start_behind,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# main just before the merge that brought migration 0013 (query_log): `git log --
# src/scanpay/store/migrations/versions/0013*` names the commit that added it; this is the
# first-parent commit before its merge, whose newest migration is 0012.
OLD_COMMIT = "445e5117b9aceeb4cf414585f4cb11d47faf59c1"
OLD_HEAD = "0012"
BOUND = 180.0  # seconds: a bound for a loaded 2-core machine, never a timing claim
MAX_TRIES = 10  # a shop's retries of one call with the same Idempotency-Key
PER_PHASE = 4  # orders each phase must see created before the next step
STREAMED = 6  # orders whose status stream stays open from the old release to the new


def extract_old_version(folder: Path) -> Path:
    """``src/`` of ``OLD_COMMIT`` in ``folder``; fails (never skips) without that history."""
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.fail(
            f"the rolling-upgrade test runs scanpay at commit {OLD_COMMIT[:12]} (the release "
            f"before migration 0013) beside this code, and {ROOT} has no such commit: a "
            f"shallow clone or a copy without git history? Clone the repository with its "
            f"history (or `git fetch --unshallow`). git said: {probe.stderr.strip()}"
        )
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_COMMIT, "src"], check=True, capture_output=True
    ).stdout
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def old_release_env(env: dict[str, str], src: Path) -> dict[str, str]:
    """``env`` for a process of the old release: its ``src`` first on the import path (the
    virtual environment's editable install of this code comes after), no coverage hook (the
    old files are not this code's)."""
    kept = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
    return {**kept, "PYTHONPATH": str(src)}


def scanpay(args: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m scanpay.cli.main ARGS`` with this code, or the code at ``pythonpath``."""
    env = child_environ()
    if pythonpath is not None:
        env = old_release_env(env, pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "scanpay.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=BOUND,
    )  # fmt: skip


def readyz(instance: Instance) -> dict[str, Any]:
    answer = httpx.get(f"{instance.url}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    details: dict[str, Any] = answer.json()
    return details


def create_unpaid(client: httpx.Client, url: str, key: str) -> dict[str, Any]:
    headers = {"Idempotency-Key": key, "Authorization": f"Bearer {SHOP_KEY}"}
    answer = client.post(f"{url}/api/orders", json={"amount": 88, "description": "Tea"},
                         headers=headers)  # fmt: skip
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    return order


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.05)


@dataclass
class Made:
    key: str
    order_id: str
    phase: str
    tries: int
    failures: list[str]


@dataclass
class Shop:
    """Threads that create orders through HAProxy and pay each through the simulator, until
    stopped; each order is tagged with the phase of the upgrade it was created in."""

    base_url: str
    sim_url: str
    phase: str = "old"
    made: list[Made] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _threads: list[threading.Thread] = field(default_factory=list)

    def count(self, phase: str) -> int:
        return sum(1 for m in list(self.made) if m.phase == phase)

    def wait(self, count: int) -> None:
        """Until ``count`` orders were made in the current phase; a failure ends the wait."""
        phase = self.phase

        def enough() -> bool:
            if self.errors:
                raise AssertionError(f"the shop failed in phase {phase!r}: {self.errors}")
            return self.count(phase) >= count

        wait_for(f"{count} orders in phase {phase!r}", enough)

    def start(self, threads: int) -> None:
        for n in range(threads):
            thread = threading.Thread(target=self._run, name=f"shop-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(BOUND)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                while not self.stop.is_set():
                    self._one(client, next(self._numbers))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _one(self, client: httpx.Client, n: int) -> None:
        phase = self.phase
        key = f"upgrade-{n}"
        headers = {"Idempotency-Key": key, "Authorization": f"Bearer {SHOP_KEY}"}
        failures: list[str] = []
        order: dict[str, Any] | None = None
        while order is None and len(failures) < MAX_TRIES:
            try:
                answer = client.post(
                    f"{self.base_url}/api/orders",
                    json={"amount": 100 + n, "description": "Oolong"},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            else:
                if answer.status_code in (200, 201) and answer.json().get("code_url"):
                    order = answer.json()
                    continue
                failures.append(f"{answer.status_code} {answer.text[:200]}")
            time.sleep(0.2)
        if order is None:
            self.errors.append(f"order {key} failed {MAX_TRIES} times: {failures}")
            self.stop.set()
            return
        paid = client.post(f"{self.sim_url}/sim/pay", json={"code_url": order["code_url"]})
        if paid.status_code != 200:
            self.errors.append(f"the simulator did not pay {key}: {paid.text[:200]}")
            self.stop.set()
            return
        self.made.append(Made(key, order["id"], phase, len(failures) + 1, failures))


def test_rolling_upgrade_from_the_previous_release(tmp_path: Path) -> None:
    if not POSTGRES_URL:
        pytest.skip("SCANPAY_TEST_POSTGRES_URL is not set")
    new_head = known_revisions()[-1]
    assert OLD_HEAD in known_revisions()
    assert new_head != OLD_HEAD  # a real schema step between the two versions
    old_src = extract_old_version(tmp_path / "old")
    assert not (old_src / "scanpay/store/migrations/versions/0013_query_log.py").exists()

    with fresh_database(POSTGRES_URL) as database_url:
        # the old release created this database
        done = scanpay(["db", "upgrade", "--database-url", database_url], old_src)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"upgraded: (empty) -> {OLD_HEAD}"
        behind = scanpay(["db", "current", "--database-url", database_url])
        assert behind.returncode == 1, behind.stdout + behind.stderr  # this code: behind

        with serve_recorded_simulator() as (sim, sim_url, _recorder):
            ports = {"a": free_port(), "b": free_port()}
            balancer = Balancer(tmp_path, ports)
            env = instance_env(database_url, balancer.url, sim, sim_url)
            old_env = old_release_env(env, old_src)
            instances = {
                name: Instance(name, port, old_env, tmp_path) for name, port in ports.items()
            }
            shop = Shop(balancer.url, sim_url)
            try:
                start_behind(balancer, instances)
                for instance in instances.values():  # the old code runs, on its own schema
                    assert readyz(instance)["head"] == OLD_HEAD
                    assert readyz(instance)["schema"] == OLD_HEAD

                # status streams held through HAProxy across the whole upgrade
                with httpx.Client(timeout=30) as client:
                    streamed = [
                        create_unpaid(client, balancer.url, f"upgrade-stream-{n}")
                        for n in range(STREAMED)
                    ]
                streams_stop = threading.Event()
                logs = open_streams(balancer.url, [o["id"] for o in streamed], streams_stop)
                wait_for("every stream's snapshot", lambda: all(x.messages for x in logs))
                shop.start(threads=2)
                shop.wait(PER_PHASE)

                # 1. expand: the new release upgrades the schema under the old instances
                shop.phase = "upgrading"
                done = scanpay(["db", "upgrade", "--database-url", database_url])
                assert done.returncode == 0, done.stderr
                assert done.stdout.strip() == f"upgraded: {OLD_HEAD} -> {new_head}"
                for instance in instances.values():  # still ready: the schema is newer
                    assert readyz(instance) | {"listen": None} == {
                        "status": "ready", "schema": new_head, "head": OLD_HEAD, "listen": None,
                    }  # fmt: skip
                shop.phase = "expanded"  # orders begun from now on: old code, new schema
                shop.wait(PER_PHASE)

                # 2. replace the instances one by one
                exit_codes = {}
                for name, port in ports.items():
                    shop.phase = f"replacing {name}"
                    exit_codes[name] = instances[name].terminate()
                    instances[name] = Instance(name, port, env, tmp_path)
                    instances[name].start()
                    instances[name].wait_ready()
                    balancer.wait_up(name)
                    assert readyz(instances[name])["head"] == new_head
                    shop.phase = f"after {name}"
                    shop.wait(PER_PHASE)
                shop.finish()
                with httpx.Client(timeout=30) as client:
                    for order in streamed:  # paid now: the new release settles them
                        answer = client.post(
                            f"{sim_url}/sim/pay", json={"code_url": order["code_url"]}
                        )
                        assert answer.status_code == 200, answer.text

                # every order paid (notifications reach whichever instance is up)
                def all_paid() -> bool:
                    found = rows(database_url, "SELECT count(*) FROM orders WHERE status = 'paid'")
                    return bool(found[0][0] == len(shop.made) + STREAMED)

                wait_for("every order paid", all_paid)
                wait_for("every stream", lambda: all(x.done.is_set() for x in logs))
                streams_stop.set()
            finally:
                shop.finish()
                balancer.stop()
                for instance in instances.values():
                    instance.stop()

            # every order created in every phase, none failed for good
            assert shop.errors == []
            made = shop.made
            phases = {m.phase for m in made}
            assert phases >= {"old", "expanded", "after a", "after b"}, phases
            keys = {m.key for m in made}
            assert len(keys) == len(made) == len({m.order_id for m in made})
            count = rows(database_url, "SELECT count(*) FROM idempotency_keys")[0][0]
            assert count == len(made) + STREAMED  # one order per key, however often sent

            # ... and paid exactly once
            paid = dict(
                rows(database_url, "SELECT order_id, count(*) FROM events WHERE type = 'paid'"
                     " GROUP BY order_id")
            )  # fmt: skip
            assert paid == {m.order_id: 1 for m in made} | {o["id"]: 1 for o in streamed}
            # the streams: drained by the old instances, resumed (Last-Event-ID) on the new
            # ones, "paid" exactly once, nothing twice
            for log in logs:
                ids = [seq for seq, _ in log.messages]
                assert log.error == "", (log.order_id, log.error)
                assert ids == sorted(set(ids)), (log.order_id, ids)
                assert log.types().count("paid") == 1, (log.order_id, log.types())
                assert log.drained >= 1, log  # every instance was replaced
                assert log.resumed_from, log
            assert rows(database_url, "SELECT count(*) FROM events WHERE type = 'alert'") == [(0,)]
            # both instances drained on SIGTERM (uvicorn re-raises it once shut down)
            assert exit_codes == {"a": -signal.SIGTERM, "b": -signal.SIGTERM}
            spread = balancer.requests("/api/orders")
            assert set(spread) == {"a", "b"}, spread

            # 3. an old instance started now refuses the newer schema, clearly
            again = Instance("old-again", free_port(), old_env, tmp_path)
            again.start()
            assert again.proc is not None
            code = again.proc.wait(BOUND)
            said = again.log_path.read_text()
            assert code != 0, said
            assert f"the database schema {new_head} is newer than this scanpay knows" in said
            assert f"(newest: {OLD_HEAD})" in said
            assert "run the scanpay version that upgraded it" in said
            assert "Traceback" not in said
            old_current = scanpay(["db", "current", "--database-url", database_url], old_src)
            assert old_current.returncode == 3, old_current.stdout + old_current.stderr

    retried = [m for m in made if m.tries > 1]
    print(f"rolling upgrade: {len(made)} orders, {len(retried)} needed a retry: "
          f"{[m.failures for m in retried]}")  # fmt: skip
