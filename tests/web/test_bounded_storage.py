"""Bounded storage of what outsiders send (issue 9), on SQLite and PostgreSQL: refused bodies
kept as digest + first bytes (5,000 junk bodies of 60 KB grow the database by less than 5 MB,
measured as pages in use), a per-source 429 with an allow-list, and retention pruning."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scanpay.store.housekeeping import Retention, pages_in_use, prune, refused_values
from scanpay.store.tables import events, idempotency_keys, notifications_received, orders
from scanpay.web.operations import Housekeeper
from tests.databases import BACKENDS
from tests.databases import database_url as fresh_database_url
from tests.web.conftest import BASE_URL, SettingsFactory, Shop, simulated_shop

JUNK_BODIES = 5_000
JUNK_SIZE = 60 * 1024


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path, "scanpay_test_") as url:
        yield url


async def open_service(make_settings: SettingsFactory, **overrides: Any) -> AsyncIterator[Shop]:
    async with simulated_shop(make_settings, reconciler_enabled=False, **overrides) as opened:
        yield opened


@pytest.fixture
async def shop(make_settings: SettingsFactory, database_url: str) -> AsyncIterator[Shop]:
    # the test's own address is allowed: the limit must not be what keeps storage bounded
    async for opened in open_service(
        make_settings, database_url=database_url, notify_allow_list="127.0.0.1"
    ):
        yield opened


async def test_junk_bodies_grow_the_database_by_little(shop: Shop) -> None:
    engine = shop.context.store.engine
    before = pages_in_use(engine)
    junk = os.urandom(JUNK_SIZE)
    paths = ("/notify/v2", "/notify/v3", "/notify/v2/refund", "/notify/v3/refund")
    types = ("text/xml", "application/json")

    async def send(number: int) -> int:
        body = number.to_bytes(4, "big") + junk[4:]  # every body different
        path = paths[number % len(paths)]
        headers = {"Content-Type": types[number % 2]}
        return (await shop.http.post(path, content=body, headers=headers)).status_code

    statuses: list[int] = []
    for start in range(0, JUNK_BODIES, 50):
        statuses += await asyncio.gather(*(send(n) for n in range(start, start + 50)))
    assert all(400 <= status < 500 and status != 429 for status in statuses)
    assert shop.count("notifications_received") == JUNK_BODIES  # every refusal is recorded
    grown = pages_in_use(engine) - before
    assert grown < 5 * 1024 * 1024, f"grew by {grown / 1e6:.1f} MB"
    with engine.connect() as conn:
        sizes = conn.execute(
            sa.select(
                sa.func.max(sa.func.length(notifications_received.c.body)),
                sa.func.min(notifications_received.c.body_size),
            )
        ).one()
    assert tuple(sizes) == (shop.settings.notify_refused_body_bytes, JUNK_SIZE)


async def test_a_source_past_its_refusals_gets_429_and_nothing_is_stored(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async for shop in open_service(
        make_settings, database_url=database_url, notify_refusals_per_minute=5
    ):
        xml = {"Content-Type": "text/xml"}
        answers = [
            await shop.http.post("/notify/v2", content=b"junk", headers=xml) for _ in range(8)
        ]
        assert [a.status_code for a in answers] == [400] * 5 + [429] * 3
        assert answers[-1].headers["content-type"].startswith("text/xml")  # still WeChat's XML
        v3 = await shop.http.post("/notify/v3", content=b"{}", headers={"Content-Type": "x/y"})
        assert v3.status_code == 429  # per source, whichever endpoint
        assert v3.json()["code"] == "FAIL"
        assert shop.count("notifications_received") == 5
        # another address is not affected
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=shop.app, client=("192.0.2.7", 4000)),
            base_url=BASE_URL,
        )
        async with other:
            answer = await other.post(
                "/notify/v2", content=b"junk", headers={"Content-Type": "text/xml"}
            )
        assert answer.status_code == 400


def test_retention_prunes_old_rows_only(database_url: str, make_settings: SettingsFactory) -> None:
    from scanpay.store.migrate import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=100), now - timedelta(days=1)
    keep = {"accepted_days": 90, "refused_days": 7, "events_days": 30, "idempotency_days": 30}
    with engine.begin() as conn:
        for at in (old, recent):  # one row at a time: an executemany takes the first's keys
            conn.execute(
                sa.insert(notifications_received),
                {"api": "v2-payment", "received_at": at, "out_trade_no": "sp1",
                 "body": b"<xml/>", "outcome": "applied", "detail": ""},
            )  # fmt: skip
            refused_at = at - timedelta(days=8) if at is recent else at
            conn.execute(
                sa.insert(notifications_received),
                refused_values("v3", b"junk" * 100, "malformed", "not JSON", keep_bytes=16,
                               now=refused_at, client="192.0.2.1"),
            )  # fmt: skip
        for name, status, at in (("ord_old", "paid", old), ("ord_open", "pending", old),
                                 ("ord_new", "paid", recent)):  # fmt: skip
            conn.execute(
                sa.insert(orders).values(id=name, amount=1, currency="CNY", description="t",
                                         status=status, last_seq=1, created_at=at, updated_at=at)
            )  # fmt: skip
            conn.execute(
                sa.insert(events).values(order_id=name, seq=1, type="created", status=status,
                                         data={}, created_at=at)
            )  # fmt: skip
            conn.execute(
                sa.insert(idempotency_keys).values(key=f"k-{name}", fingerprint="f",
                                                   order_id=name, created_at=at)
            )  # fmt: skip
    pruned = prune(engine, now, Retention(**keep))
    assert (pruned.accepted, pruned.refused, pruned.events, pruned.idempotency_keys) == (1, 2, 1, 2)
    with engine.connect() as conn:
        left_events = conn.execute(sa.select(events.c.order_id).order_by(events.c.order_id))
        assert [r[0] for r in left_events] == ["ord_new", "ord_open"]  # open orders keep theirs
        assert conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys)).scalar() == 1
        rows = conn.execute(sa.select(notifications_received.c.outcome)).all()
        assert [r[0] for r in rows] == ["applied"]
    assert prune(engine, now, Retention(**keep)).total == 0  # nothing left to do
    engine.dispose()


async def test_the_housekeeper_prunes_with_the_settings(shop: Shop) -> None:
    keeper = Housekeeper(
        shop.settings,
        shop.context.store,
        None,
        lambda: datetime.now(UTC) + timedelta(days=8),
        shop.app.state.metrics_registry,
    )
    await shop.http.post("/notify/v2", content=b"junk", headers={"Content-Type": "text/xml"})
    assert shop.count("notifications_received") == 1
    assert await keeper.prune_once() == 1  # refused: 7 days by default
    assert shop.count("notifications_received") == 0
