"""The worker's passes against a real receiver, on SQLite and PostgreSQL: every attempt is
recorded once, with its answer, and no lease is left behind. On PostgreSQL the attempts are
recorded in a transaction of their own beside the pass that leases the next deliveries
(``OutboxStore.records_apart``), on database threads of their own here as in
``scanpay deliver``; a lost record would show as a delivery still pending, or sent twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus, utcnow
from scanpay.store.outbox import OutboxStore
from scanpay.store.webhook_tables import webhook_attempts, webhook_deliveries
from scanpay.webhooks.sender import Sender
from scanpay.webhooks.worker import WebhookWorker
from tests.store.test_outbox import _event, _order

ORDERS = 24


async def test_every_attempt_is_recorded_once(engine: sa.Engine) -> None:
    seen: Counter[str] = Counter()  # webhook-id -> requests
    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line
                )
                body = await reader.readexactly(int(fields["Content-Length"]))
                order = json.loads(body)["data"]["out_trade_no"]
                seen[fields["webhook-id"]] += 1
                # every fourth order's first attempt fails: its retry is recorded too
                failing = int(order[-3:]) % 4 == 0 and seen[fields["webhook-id"]] == 1
                status = b"500 No" if failing else b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def pay(n: int) -> None:
        _event(engine, _order(engine, 100 + n), EventType.PAID, OrderStatus.PAID)

    outbox = OutboxStore(engine, run, utcnow)
    outbox.configure_settings_endpoint_sync(f"http://127.0.0.1:{port}/hook", "whsec_" + "A" * 32,
                                            None)  # fmt: skip
    sender = Sender(allow_private=True)
    worker = WebhookWorker(outbox, sender, schedule=(0, 0.1), poll_seconds=0.05,
                           concurrency=8, per_endpoint=8)  # fmt: skip
    try:
        async with worker.running():
            for n in range(ORDERS):
                await asyncio.to_thread(pay, n)
                worker.wake()
            for _ in range(200):
                if len(seen) == ORDERS and sum(seen.values()) == ORDERS + ORDERS // 4:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # room for an unrecorded one to be sent again: none is
    finally:
        await sender.aclose()
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.05)  # the handlers see their connections end
    assert len(seen) == ORDERS
    assert sorted(Counter(seen.values()).items()) == [(1, ORDERS - ORDERS // 4), (2, ORDERS // 4)]
    d = webhook_deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(d.status, d.attempts, d.leased_by, d.last_status)).all()
        recorded = conn.execute(sa.select(sa.func.count()).select_from(webhook_attempts))
        assert recorded.scalar_one() == sum(seen.values())
    assert Counter((r.status, r.attempts, r.leased_by, r.last_status) for r in rows) == {
        ("delivered", 1, None, 200): ORDERS - ORDERS // 4,
        ("delivered", 2, None, 200): ORDERS // 4,
    }
