"""One instance's part in a cluster (issue 13): ``/readyz``, the graceful drain of status
streams, the schema guard (``serve`` refuses a newer schema; ``scanpay db``), and LISTEN
waking streams for changes committed elsewhere, with catch-up after the connection drops."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from scanpay.cli.main import main
from scanpay.domain.machine import Trigger
from scanpay.domain.model import AttemptStatus
from scanpay.domain.ports import AttemptUpdate
from scanpay.errors import ConfigurationError
from scanpay.store.listen import parse_payload
from scanpay.store.migrate import check_schema, known_revisions, make_engine, schema_state
from scanpay.store.sql import SqlStore
from scanpay.web.app import create_app
from scanpay.web.cluster import ClusterRuntime
from scanpay.web.events import DRAIN_RETRY_MS
from tests.databases import scratch_postgres
from tests.web.cluster_kit import HAPROXY_TEMPLATE, haproxy_config
from tests.web.conftest import SettingsFactory, Shop, simulated_shop
from tests.web.test_events import parse_sse

HEAD = known_revisions()[-1]


async def test_readyz_then_drain_ends_streams_with_a_retry_hint(shop: Shop) -> None:
    ready = await shop.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "schema": HEAD, "head": HEAD}
    orders = [await shop.create_order(amount=100 + n) for n in range(2)]
    streams = [asyncio.create_task(shop.http.get(f"/api/orders/{o['id']}/events")) for o in orders]
    await asyncio.sleep(0.2)
    assert not any(stream.done() for stream in streams)
    cluster: ClusterRuntime = shop.app.state.cluster
    cluster.drain()
    responses = await asyncio.wait_for(asyncio.gather(*streams), timeout=10)
    for order, response in zip(orders, responses, strict=True):
        assert response.status_code == 200
        assert parse_sse(response.text)[-1][1] == {
            "order_id": order["id"], "seq": 2, "type": "snapshot", "status": "pending"
        }  # fmt: skip
        assert response.text.endswith(f"retry: {DRAIN_RETRY_MS}\n: draining, reconnect\n\n")
    draining = await shop.http.get("/readyz")
    assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
    assert len(shop.context.hub) == 0


def test_schema_guard_and_db_command(
    tmp_path: Path, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'schema.sqlite3'}"
    engine = make_engine(url)
    try:
        with pytest.raises(ConfigurationError, match=r"behind.*scanpay db upgrade"):
            check_schema(engine, upgrade_first=False)
        assert main(["db", "current", "--database-url", url]) == 1
        assert "(empty)" in capsys.readouterr().out
        assert main(["db", "upgrade", "--database-url", url]) == 0
        assert capsys.readouterr().out == f"upgraded: (empty) -> {HEAD}\n"
        assert main(["db", "current", "--database-url", url]) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"database: {HEAD}"
        assert check_schema(engine, upgrade_first=False).current == HEAD
        running = create_app(make_settings(database_url=url))  # started before the upgrade
        # A newer scanpay upgraded the database: this one refuses to serve on it...
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        assert schema_state(engine).newer
        # ...but one already running stays ready (expand-then-contract: old code works on
        # the expanded schema while the rolling restart replaces it)
        ready, details = running.state.cluster.readiness()
        assert (ready, details["schema"]) == (True, "9999")
        asyncio.run(running.state.scanpay.aclose())
        with pytest.raises(ConfigurationError, match="9999 is newer than this scanpay"):
            create_app(make_settings(database_url=url))
        assert main(["db", "current", "--database-url", url]) == 3
        assert main(["db", "upgrade", "--database-url", url]) == 2  # refused, nothing changed
        assert "newer than this scanpay knows" in capsys.readouterr().err
        assert schema_state(engine).current == "9999"
    finally:
        engine.dispose()
    assert main(["db", "current", "--database-url", "nonsense://x:secret@h/db"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err
    assert "secret" not in err


def test_listen_payloads() -> None:
    assert parse_payload("ord_abc 7") == [("ord_abc", 7)]
    assert parse_payload("ord_a 7,ord_b 12") == [("ord_a", 7), ("ord_b", 12)]
    for bad in ("", "ord_abc", "ord_abc x", " 7", "ord_abc -1", "ord_abc " + "9" * 19):
        assert parse_payload(bad) == []
    assert parse_payload("ord_a 1,junk,ord_b 2") == [("ord_a", 1), ("ord_b", 2)]


# ---- LISTEN on PostgreSQL ------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_postgres("scanpay_listen_") as url:
        yield url


@pytest.fixture
async def pg_shop(make_settings: SettingsFactory, pg_url: str) -> AsyncIterator[Shop]:
    """The service on PostgreSQL with the safety-net poll out of reach (300 s): only LISTEN
    (or its catch-up) can wake a stream for a change committed by another instance."""
    async with simulated_shop(make_settings, database_url=pg_url, stream_poll_seconds=300) as s:
        cluster: ClusterRuntime = s.app.state.cluster
        async with cluster.running():
            assert cluster.listener is not None
            await asyncio.wait_for(cluster.listener.connected.wait(), 10)
            yield s


def pay_elsewhere(url: str, order_id: str) -> None:
    """Another instance (its own store and connections) records the payment."""
    other = SqlStore(make_engine(url))
    try:
        attempt = other.current_attempt_sync(order_id)
        update = AttemptUpdate(attempt.id, AttemptStatus.PAID, "4200000000000013")
        applied = other.apply_trigger_sync(
            order_id, Trigger.PAYMENT_SUCCEEDED, {"source": "elsewhere"}, update
        )
        assert applied.event is not None
    finally:
        other.close()


async def paid_stream(shop: Shop, order_id: str) -> asyncio.Task[httpx.Response]:
    task = asyncio.create_task(shop.http.get(f"/api/orders/{order_id}/events"))
    await asyncio.sleep(0.3)
    assert not task.done()
    return task


@pytest.mark.postgres
async def test_listen_wakes_streams_and_catches_up_after_the_connection_drops(
    pg_shop: Shop, pg_url: str
) -> None:
    shop = pg_shop
    cluster: ClusterRuntime = shop.app.state.cluster
    listener = cluster.listener
    assert listener is not None
    orders = [await shop.create_order(amount=100 + n) for n in range(3)]

    # 1. live: a payment committed by another instance reaches the stream through NOTIFY
    stream = await paid_stream(shop, orders[0]["id"])
    pay_elsewhere(shop.settings.database_url, orders[0]["id"])
    response = await asyncio.wait_for(stream, 20)
    assert parse_sse(response.text)[-1][1]["type"] == "paid"

    # 2. the server ends the LISTEN session: the listener reconnects by itself
    stream = await paid_stream(shop, orders[1]["id"])
    pid = listener.backend_pid()
    assert pid is not None
    admin = sa.create_engine(pg_url)
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    for _ in range(200):
        if listener.connections == 2 and listener.connected.is_set():
            break
        await asyncio.sleep(0.05)
    assert listener.connections == 2
    pay_elsewhere(shop.settings.database_url, orders[1]["id"])
    response = await asyncio.wait_for(stream, 20)
    assert parse_sse(response.text)[-1][1]["type"] == "paid"

    # 3. a change made while nobody listened is found by the catch-up after reconnecting
    stream = await paid_stream(shop, orders[2]["id"])
    await listener.stop()
    pay_elsewhere(shop.settings.database_url, orders[2]["id"])
    await asyncio.sleep(0.3)
    assert not stream.done()  # nothing heard it: the poll is 300 s away
    await listener.start()
    response = await asyncio.wait_for(stream, 20)
    assert parse_sse(response.text)[-1][1]["type"] == "paid"
    assert listener.connections == 3
    ready = await shop.http.get("/readyz")
    assert ready.json()["listen"] == "connected"


def test_shipped_haproxy_config_is_valid() -> None:
    """deploy/haproxy.cfg as shipped, and the loopback copy the cluster tests use."""
    copy = haproxy_config(18080, {"x": 18081, "y": 18082}, stats_port=18090)
    assert "    bind 127.0.0.1:18080\n" in copy
    assert copy.count("    server ") == 2
    for text in (HAPROXY_TEMPLATE.read_text(), copy):
        checked = subprocess.run(
            ["haproxy", "-c", "-f", "/dev/stdin"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
