"""Issue 13: scanpay behind PgBouncer in transaction-pooling mode (Debian's pgbouncer 1.18,
which has no prepared-statement support).

PgBouncer runs on a loopback port in front of the test PostgreSQL (scripts/postgres.sh) with a
server pool smaller than the clients' pools, so server sessions are handed from client to
client between transactions; two ``scanpay serve`` (behind HAProxy) use it with
``SCANPAY_DATABASE_PREPARED_STATEMENTS=false`` and a direct ``SCANPAY_DATABASE_LISTEN_URL``.
Everything the instances do goes through it: orders created and closed, payments settled by
notifications (the group-commit settler's psycopg pipeline) and by the reconciler's queries
(leases, ``FOR UPDATE SKIP LOCKED``), webhooks published (``pg_advisory_xact_lock``) and
delivered (leases); status streams on one instance hear of payments settled on the other
through the direct LISTEN connection only (the safety-net poll is out of reach). Then, on the
same cluster, unpaid orders expire and paid ones are refunded, the outcomes left to the
reconciler's attempt and refund leases (WeChat sends no notification): each close and each
refund call is made once.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from scanpay.domain.reconciliation import shanghai_day
from scanpay.simulator import Simulator
from scanpay.simulator.faults import parse_header
from scanpay.web.cluster import LISTEN_THROUGH_POOLER, ClusterRuntime
from scanpay.web.hub import ChangeHub
from scanpay.webhooks.signing import generate_secret
from scanpay.wechat.v2.notify import is_success_ack
from tests.simulator.live import free_port
from tests.store.conftest import POSTGRES_URL
from tests.web.cluster_kit import (
    SHOP_KEY,
    Balancer,
    CallRecorder,
    Instance,
    fresh_database,
    instance_env,
    open_streams,
    rows,
    serve_recorded_simulator,
    start_behind,
)
from tests.web.conftest import SettingsFactory
from tests.webhooks.receiver import Receiver, check_signed, serve_receiver

PGBOUNCER = "/usr/sbin/pgbouncer"
SERVER_POOL = 2  # PgBouncer's server connections: fewer than the instances' clients
ORDERS = 40
BY_QUERY = 4  # orders whose notification is dropped: paid by the reconciler's query
CROSS = 3  # orders whose notification the test posts to instance a, streamed on b
CLOSED = 3  # unpaid orders closed through the shop API
EXPIRING = 3  # unpaid orders left to expire (the reconciler closes them at WeChat)
REFUNDS = 3  # paid orders refunded in full; their outcome learnt by the reconciler's queries
BOUND = 180.0  # seconds: a bound for a loaded 2-core machine, never a timing claim


@dataclass
class PgBouncer:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    user: str

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` through PgBouncer."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on PgBouncer's admin console (simple query protocol only)."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user}", autocommit=True
        ) as conn:
            result = conn.pgconn.exec_(f"SHOW {what}".encode())
            names = [(result.fname(j) or b"").decode() for j in range(result.nfields)]
            return [
                {names[j]: (result.get_value(i, j) or b"").decode() for j in range(result.nfields)}
                for i in range(result.ntuples)
            ]


@contextmanager
def running_pgbouncer(database_url: str, alias: str) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling, ``SERVER_POOL`` server connections) on a free loopback
    port, serving ``database_url``'s database as ``alias``."""
    if not os.access(PGBOUNCER, os.X_OK):
        pytest.fail(f"{PGBOUNCER} is missing: run `bash scripts/setup.sh --test`")
    target = sa.make_url(database_url)
    user = target.username or "postgres"
    pg_host, pg_port = target.host or "127.0.0.1", target.port or 5432
    server = f"host={pg_host} port={pg_port} dbname={target.database} user={user}"
    if target.password:
        server += f" password={target.password}"
    port = free_port()  # PgBouncer's own
    folder = Path(tempfile.mkdtemp(prefix="scanpay-pgbouncer-"))
    folder.chmod(0o755)  # PgBouncer will not run as root: it runs as postgres then
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n{alias} = {server}\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\n"  # the server trusts loopback; every client logs in as `user`
        f"admin_users = {user}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 200\n"
    )
    config.chmod(0o644)
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", pwd.getpwnam("postgres").pw_name]
    log_path = folder / "pgbouncer.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(port, proc, log_path, user)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                bouncer.show("VERSION")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {log_path.read_text()}") from None
                time.sleep(0.05)
        yield bouncer
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_instances_through_pgbouncer_transaction_pooling(tmp_path: Path) -> None:
    if not POSTGRES_URL:
        pytest.skip("SCANPAY_TEST_POSTGRES_URL is not set")
    with (
        fresh_database(POSTGRES_URL) as direct_url,
        running_pgbouncer(direct_url, "scanpay") as bouncer,
        serve_recorded_simulator() as (sim, sim_url, recorder),
        serve_receiver() as receiver,
    ):
        # the schema through a direct connection, as documented
        subprocess.run(
            [sys.executable, "-m", "scanpay.cli.main", "db", "upgrade", "--database-url",
             direct_url],
            check=True, capture_output=True,
        )  # fmt: skip
        ports = {"a": free_port(), "b": free_port()}
        balancer = Balancer(tmp_path, ports)
        secret = generate_secret()
        # the merchant's API certificate and key: v2 refunds (secapi) need them
        key_file, cert_file = tmp_path / "apiclient_key.pem", tmp_path / "apiclient_cert.pem"
        key_file.write_text(sim.credentials.merchant_private_key_pem.reveal())
        key_file.chmod(0o600)
        cert_file.write_text(sim.credentials.merchant_certificate_pem)
        env = instance_env(
            bouncer.url("scanpay"),
            balancer.url,
            sim,
            sim_url,
            database_prepared_statements="false",
            database_listen_url=direct_url,
            webhook_url=receiver.url,
            webhook_secret=secret,
            merchant_key_file=str(key_file),
            merchant_cert_file=str(cert_file),
            webhook_allow_private="true",
            webhook_poll_seconds="0.2",
            # the streams' safety-net poll beyond the test's bound: only LISTEN can tell them
            # (without the direct LISTEN URL, the streams wait in vain: tried)
            stream_poll_seconds="300",
        )
        instances = {name: Instance(name, port, env, tmp_path) for name, port in ports.items()}
        try:
            start_behind(balancer, instances)
            a, b = instances["a"], instances["b"]
            run_the_shop(bouncer, direct_url, a, b, balancer.url, sim, sim_url, receiver)
            expire_and_refund(direct_url, balancer.url, sim, recorder)
            # the day's bill reconciled by the command, through PgBouncer too
            day = shanghai_day(sim.clock.now()).isoformat()
            reconciled = subprocess.run(
                [sys.executable, "-m", "scanpay.cli.main", "reconcile", "--date", day],
                env=env, capture_output=True, text=True, timeout=BOUND,
            )  # fmt: skip
            logs = a.log_path.read_text() + b.log_path.read_text()
        finally:
            balancer.stop()
            for instance in instances.values():
                instance.stop()
        assert "Traceback" not in logs, logs[-4000:]
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        bill_rows = ORDERS + REFUNDS  # the payments and the refunds
        assert f"reconciliation {day} (API v2): matched, {bill_rows} bill rows" in reconciled.stdout
        check_signed(receiver.accepted(), secret)
        assert recorder.of("/pay/orderquery"), "the reconciler never queried"
        assert len(recorder.of("/pay/closeorder")) >= CLOSED


def run_the_shop(
    bouncer: PgBouncer,
    direct_url: str,
    a: Instance,
    b: Instance,
    url: str,
    sim: Simulator,
    sim_url: str,
    receiver: Receiver,
) -> None:
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    stop = threading.Event()
    with httpx.Client(timeout=30) as client:

        def create(n: int) -> dict[str, Any]:
            answer = client.post(
                f"{url}/api/orders",
                json={"amount": 200 + n, "description": "Pu'er"},
                headers={**auth, "Idempotency-Key": f"pgb-{n}"},
            )
            assert answer.status_code == 201, answer.text
            order: dict[str, Any] = answer.json()
            return order

        def pay(order: dict[str, Any]) -> None:
            answer = client.post(f"{sim_url}/sim/pay", json={"code_url": order["code_url"]})
            assert answer.status_code == 200, answer.text

        with ThreadPoolExecutor(8) as pool:  # more clients than PgBouncer has servers
            orders = list(pool.map(create, range(ORDERS)))
        to_close = [create(ORDERS + n) for n in range(CLOSED)]
        cross, by_query = orders[:CROSS], orders[CROSS : CROSS + BY_QUERY]
        streamed = orders[: CROSS + 10]  # streams held on instance b
        stream_logs = open_streams(b.url, [o["id"] for o in streamed], stop)
        wait_for("every stream's snapshot", lambda: all(x.messages for x in stream_logs))
        for order in cross + by_query:  # the simulator does not deliver these
            sim.faults.for_order(order["out_trade_no"], parse_header("drop_notifications=1"))
        with ThreadPoolExecutor(8) as pool:  # at once: batches for the settler
            list(pool.map(pay, orders))
        # settled on a, streamed on b: the notification reaches a only
        notes = client.get(f"{sim_url}/sim/notifications").json()
        bodies = {n["out_trade_no"]: n["body"] for n in notes}
        for order in cross:
            answer = client.post(f"{a.url}/notify/v2", content=bodies[order["out_trade_no"]])
            assert answer.status_code == 200, answer.text
            assert is_success_ack(answer.content)
        for order in to_close:
            answer = client.post(f"{url}/api/orders/{order['id']}/close", headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "closed"

        ids = [o["id"] for o in orders]

        def all_paid() -> bool:
            found = rows(direct_url, "SELECT count(*) FROM orders WHERE status = 'paid'")
            return bool(found[0][0] == ORDERS)

        wait_for("every order paid", all_paid)
        wait_for("every stream", lambda: all(x.done.is_set() for x in stream_logs))
        stop.set()

        def all_webhooks() -> bool:
            paid = {
                r.json["data"]["id"] for r in receiver.accepted() if r.json["type"] == "order.paid"
            }
            return paid >= set(ids)

        wait_for("an order.paid webhook for every order", all_webhooks)

        # both instances ready, their LISTEN connections up (direct, not through PgBouncer)
        for instance in (a, b):
            ready = httpx.get(f"{instance.url}/readyz", timeout=10).json()
            assert ready["status"] == "ready"
            assert ready["listen"] == "connected"
        stats = {row["database"]: row for row in bouncer.show("STATS")}
        clients = [c for c in bouncer.show("CLIENTS") if c["database"] == "scanpay"]
        servers = [s for s in bouncer.show("SERVERS") if s["database"] == "scanpay"]

    # exactly once, by the path each order took
    paid = dict(
        rows(direct_url, "SELECT order_id, count(*) FROM events WHERE type = 'paid' GROUP BY 1")
    )
    assert paid == dict.fromkeys(ids, 1)
    sources = dict(
        rows(
            direct_url,
            "SELECT order_id, data->>'source' FROM events WHERE type = 'paid'",
        )
    )
    for order in by_query:
        assert sources[order["id"]] != "notification_v2", sources[order["id"]]
    notified = [o for o in orders if o not in by_query]
    # the others by their notification, through the group-commit settler's psycopg pipeline
    # (or, on a slow machine, by a query that came first: the notification is then a duplicate)
    by_notification = [o for o in notified if sources[o["id"]] == "notification_v2"]
    assert len(by_notification) > len(notified) / 2, sources
    kept = rows(direct_url, "SELECT count(DISTINCT out_trade_no) FROM notifications_received")
    assert kept == [(len(notified),)]
    closed = rows(direct_url, "SELECT count(*) FROM orders WHERE status = 'closed'")
    assert closed == [(CLOSED,)]
    # the streams on b heard of every payment, those settled on a too, through LISTEN: the
    # safety-net poll (SCANPAY_STREAM_POLL_SECONDS=300) is beyond the waits' bound
    for log in stream_logs:
        assert log.error == "", (log.order_id, log.error)
        assert log.types() == ["snapshot", "paid"], (log.order_id, log.types())
    # the webhooks: published (advisory lock) and delivered (leases) through PgBouncer
    published = rows(direct_url, "SELECT count(*) FROM events WHERE position IS NULL")
    assert published == [(0,)]

    # everything went through PgBouncer, which multiplexed more clients over fewer servers
    assert int(stats["scanpay"]["total_xact_count"]) > ORDERS * 3, stats["scanpay"]
    assert len(servers) <= SERVER_POOL, servers
    assert len(clients) > SERVER_POOL, clients
    # each instance keeps one listener session (it LISTENs only while it has status
    # streams, scanpay.store.listen), and those sessions are direct: their client ports are
    # none of PgBouncer's
    bouncer_ports = {s["local_port"] for s in servers}
    listening = rows(
        direct_url,
        "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'scanpay-listen'",
    )
    assert len(listening) == 2, listening
    assert not {str(port) for (port,) in listening} & bouncer_ports


def expire_and_refund(direct_url: str, url: str, sim: Simulator, recorder: CallRecorder) -> None:
    """Order expiry and refunds through PgBouncer, left to the reconciler's leases (both
    instances poll for due work): unpaid orders whose payment window and deadline have passed
    are closed at WeChat and expire; full refunds whose notifications WeChat never sends are
    settled by the reconciler's refund queries. Each is done once: one close per attempt, one
    refund call per refund, one expired or refunded event per order."""
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    paid = rows(
        direct_url,
        "SELECT id, amount FROM orders WHERE status = 'paid' ORDER BY id LIMIT :n",
        n=REFUNDS,
    )
    assert len(paid) == REFUNDS
    # from now on WeChat sends no notification: the refunds' outcomes come from queries
    sim.faults.set(parse_header("drop_notifications=1"), now=sim.clock.timestamp())
    with httpx.Client(base_url=url, timeout=30, headers=auth) as client:
        unpaid = []
        for n in range(EXPIRING):
            answer = client.post(
                "/api/orders",
                json={"amount": 300 + n, "description": "Oolong"},
                headers={"Idempotency-Key": f"pgb-expiring-{n}"},
            )
            assert answer.status_code == 201, answer.text
            unpaid.append(answer.json())
        for order_id, amount in paid:
            answer = client.post(
                f"/api/orders/{order_id}/refunds",
                json={"amount": amount, "reason": "returned"},
                headers={"Idempotency-Key": f"pgb-refund-{order_id}"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] in ("submitting", "processing"), answer.text
    expiring = [o["id"] for o in unpaid]
    # their payment window and deadline past, their next look due: the reconciler's to do
    engine = sa.create_engine(direct_url)
    try:
        with engine.begin() as conn:
            past = "now() - interval '1 second'"
            conn.execute(
                sa.text(f"UPDATE orders SET expires_at = {past} WHERE id = ANY(:ids)"),
                {"ids": expiring},
            )
            conn.execute(
                sa.text(
                    f"UPDATE payment_attempts SET expires_at = {past}, next_query_at = now()"
                    " WHERE order_id = ANY(:ids)"
                ),
                {"ids": expiring},
            )
    finally:
        engine.dispose()

    def settled() -> bool:
        found = rows(
            direct_url,
            "SELECT count(*) FILTER (WHERE id = ANY(:expiring) AND status = 'expired'),"
            " count(*) FILTER (WHERE id = ANY(:refunded) AND status = 'refunded') FROM orders",
            expiring=expiring,
            refunded=[order_id for order_id, _ in paid],
        )
        return found == [(EXPIRING, REFUNDS)]

    wait_for("the orders expired and the refunds settled", settled)
    sim.faults.clear()

    numbers = dict(
        rows(
            direct_url,
            "SELECT order_id, out_trade_no FROM payment_attempts WHERE order_id = ANY(:ids)",
            ids=expiring + [order_id for order_id, _ in paid],
        )
    )
    # expiry: one close at WeChat per attempt, one expired event per order
    closes = Counter(c.out_trade_no for c in recorder.of("/pay/closeorder"))
    assert {numbers[i]: closes[numbers[i]] for i in expiring} == {
        numbers[i]: 1 for i in expiring
    }, closes
    expired = dict(
        rows(
            direct_url,
            "SELECT order_id, count(*) FROM events WHERE status = 'expired' GROUP BY 1",
        )
    )
    assert expired == dict.fromkeys(expiring, 1)
    # refunds: one refund call each, settled by the reconciler's queries, one refunded event
    refunded_ids = [order_id for order_id, _ in paid]
    calls = Counter(c.out_trade_no for c in recorder.of("/secapi/pay/refund"))
    assert {numbers[i]: calls[numbers[i]] for i in refunded_ids} == {
        numbers[i]: 1 for i in refunded_ids
    }, calls
    assert len(recorder.of("/pay/refundquery")) >= REFUNDS
    assert rows(
        direct_url,
        "SELECT status, count(*), bool_and(query_count > 0) FROM refunds GROUP BY 1",
    ) == [("success", REFUNDS, True)]
    events = dict(
        rows(
            direct_url,
            "SELECT order_id, count(*) FROM events WHERE status = 'refunded' GROUP BY 1",
        )
    )
    assert events == dict.fromkeys(refunded_ids, 1)
    leases = rows(
        direct_url,
        "SELECT count(*) FROM payment_attempts WHERE lease_until > now()"
        " UNION ALL SELECT count(*) FROM refunds WHERE lease_until > now()",
    )
    assert leases == [(0,), (0,)]


def test_prepared_statements_off_without_a_listen_url_is_warned_about(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a pooler LISTEN seems to work but hears nothing (tried above): an instance
    configured for PgBouncer without a direct LISTEN URL says so when it starts."""
    pooled = "postgresql+psycopg://scanpay@127.0.0.1:6432/scanpay"  # never connected to here
    engine = sa.create_engine(pooled)
    try:
        for extra, warned in (
            ({"database_prepared_statements": False}, True),
            ({"database_prepared_statements": False, "database_listen_url": pooled}, False),
            ({}, False),
        ):
            caplog.clear()
            settings = make_settings(database_url=pooled, **extra)
            with caplog.at_level(logging.WARNING, logger="scanpay.web.cluster"):
                ClusterRuntime(settings, engine, ChangeHub())
            assert (LISTEN_THROUGH_POOLER in caplog.messages) is warned, extra
        assert "SCANPAY_DATABASE_LISTEN_URL" in LISTEN_THROUGH_POOLER
    finally:
        engine.dispose()
