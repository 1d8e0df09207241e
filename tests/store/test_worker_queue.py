"""A worker's queued deliveries on PostgreSQL (taken into its batch, waiting for room to an
endpoint that allows one at a time) follow what happens to their endpoint meanwhile: a 410
stops them at once, a deletion by another process within a poll, and a rotated secret signs
them from then on. Real receiver on a loopback port, real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus, utcnow
from scanpay.store.outbox import OutboxStore
from scanpay.webhooks.sender import Sender
from scanpay.webhooks.signing import generate_secret
from scanpay.webhooks.worker import WebhookWorker
from tests.databases import migrated_engine
from tests.store.test_outbox import _event, _order
from tests.webhooks.receiver import Receiver, check_signed, serve_receiver

pytestmark = pytest.mark.postgres
ORDERS = 6


class Run:
    def __init__(self, outbox: OutboxStore, endpoint_id: str) -> None:
        self.outbox = outbox
        self.endpoint_id = endpoint_id
        self.rows: list[tuple[str, int]] = []  # (status, attempts) once the worker stopped


@asynccontextmanager
async def queued(
    tmp_path: Path, prefix: str, endpoint: Callable[[OutboxStore], str]
) -> AsyncIterator[Run]:
    """``ORDERS`` payments written, then a worker (one delivery at a time per endpoint) that
    takes them all in its first pass: one in flight, the rest queued."""
    with migrated_engine("postgres", tmp_path, prefix) as engine:

        async def run(fn: Any, *args: Any) -> Any:
            return await asyncio.to_thread(fn, *args)

        outbox = OutboxStore(engine, run, utcnow)
        run_ = Run(outbox, endpoint(outbox))
        for n in range(ORDERS):
            _event(engine, _order(engine, n), EventType.PAID, OrderStatus.PAID)
        sender = Sender(allow_private=True)
        worker = WebhookWorker(outbox, sender, schedule=(0, 60), poll_seconds=0.05,
                               concurrency=4, per_endpoint=1)  # fmt: skip
        try:
            async with worker.running():
                worker.wake()
                yield run_
        finally:
            await sender.aclose()
        run_.rows = _rows(engine)


async def _arrived(receiver: Receiver, count: int) -> None:
    await asyncio.to_thread(receiver.wait_for, count)


def _first_arriving(receiver: Receiver) -> None:
    """Until the first request is at the receiver (not answered yet: it answers late)."""
    deadline = time.monotonic() + 20
    while not receiver.arriving:
        assert time.monotonic() < deadline, "no request came"
        time.sleep(0.01)


def _rows(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT status, attempts FROM webhook_deliveries"))
        rows = sorted((r.status, r.attempts) for r in found)
        assert conn.execute(sa.text("SELECT count(*) FROM webhook_batches")).scalar() == 0
    return rows


async def test_a_410_stops_the_endpoints_queued_deliveries(tmp_path: Path) -> None:
    with serve_receiver() as receiver:
        receiver.script = [(410, {})] * ORDERS
        receiver.delay = 0.3

        def settings(outbox: OutboxStore) -> str:
            outbox.configure_settings_endpoint_sync(receiver.url, generate_secret(), None)
            return "we_settings"

        async with queued(tmp_path, "queue_410_", settings) as run:
            await _arrived(receiver, 1)
            await asyncio.sleep(1.0)  # (room for more requests: none comes)
        assert len(receiver.received) == 1
        # the one that got the 410 failed; the others wait as pending rows of a disabled
        # endpoint, as a claim would have left them
        assert run.rows == [("failed", 1)] + [("pending", 0)] * (ORDERS - 1)


async def test_a_deleted_endpoints_queued_deliveries_are_cancelled(tmp_path: Path) -> None:
    with serve_receiver() as receiver:
        receiver.delay = 1.0

        def api(outbox: OutboxStore) -> str:
            return outbox.create_endpoint_sync(receiver.url, generate_secret(), None).id

        async with queued(tmp_path, "queue_deleted_", api) as run:
            await asyncio.to_thread(_first_arriving, receiver)
            # deleted through another process's API (no word to this worker)
            await asyncio.to_thread(run.outbox.delete_endpoint_sync, run.endpoint_id)
            await _arrived(receiver, 1)
            await asyncio.sleep(0.5)
        assert len(receiver.received) == 1
        assert run.rows == [("cancelled", 0)] * (ORDERS - 1) + [("delivered", 1)]


async def test_queued_deliveries_are_signed_with_a_rotated_secret(tmp_path: Path) -> None:
    old, new = generate_secret(), generate_secret()
    with serve_receiver() as receiver:
        receiver.delay = 0.6

        def api(outbox: OutboxStore) -> str:
            return outbox.create_endpoint_sync(receiver.url, old, None).id

        async with queued(tmp_path, "queue_rotated_", api) as run:
            await asyncio.to_thread(_first_arriving, receiver)
            await asyncio.to_thread(run.outbox.rotate_secret_sync, run.endpoint_id, new,
                                    timedelta(hours=1))  # fmt: skip
            received = await asyncio.to_thread(receiver.wait_for, ORDERS, 30)
        check_signed(received, old)  # the old secret still signs (the grace period)
        check_signed(received[1:], new)  # and the new one signs all but the first
        assert [len(r.headers["webhook-signature"].split()) for r in received] == [1] + [2] * (
            ORDERS - 1
        )
        assert run.rows == [("delivered", 1)] * ORDERS
