"""LISTEN on demand (issue 13): with ``wanted``, the listener's session LISTENs only while
something watches, catches up after each LISTEN, and UNLISTENs once nothing has watched for
``idle_seconds``; PostgreSQL then no longer delivers to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa

from scanpay.store.listen import CHANNEL, ChangeListener, conninfo

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("engine", ["postgres"], indirect=True),  # tests/store/conftest.py
]


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {what} after 20 s")


async def test_listens_only_while_wanted(engine: sa.Engine) -> None:
    url = engine.url.render_as_string(False)
    heard: list[tuple[str, int]] = []
    catch_ups = 0
    want = False

    async def catch_up() -> None:
        nonlocal catch_ups
        catch_ups += 1

    listener = ChangeListener(
        url, lambda order, seq: heard.append((order, seq)), catch_up,
        wanted=lambda: want, idle_seconds=0.3,
    )  # fmt: skip
    sender = await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True)

    async with sender:
        await listener.start()
        try:
            await until(listener.connected.is_set, "connected")
            assert not listener.listening  # nothing watched: no LISTEN
            assert catch_ups == 0
            await sender.execute("SELECT pg_notify(%s, 'ord_a 2')", (CHANNEL,))
            await asyncio.sleep(0.3)
            assert heard == []

            want = True  # a stream opened: LISTEN, then the catch-up
            await until(lambda: listener.listening and catch_ups == 1, "listening")
            await sender.execute("SELECT pg_notify(%s, 'ord_b 3,ord_c 4')", (CHANNEL,))
            await until(lambda: len(heard) == 2, "heard")
            assert heard == [("ord_b", 3), ("ord_c", 4)]

            want = False  # the last stream closed: UNLISTEN after idle_seconds
            await until(lambda: not listener.listening, "unlistened")
            await sender.execute("SELECT pg_notify(%s, 'ord_d 5')", (CHANNEL,))
            await asyncio.sleep(0.3)
            assert heard == [("ord_b", 3), ("ord_c", 4)]
            assert listener.connections == 1  # the same session throughout
            assert listener.connected.is_set()
        finally:
            await listener.stop()
