"""The operator console's pages with 100,000 orders: p50/p95 per page, SQLite and PostgreSQL.

Each page is a full request through the service's ASGI app (session check, queries, template)
in-process over httpx's ASGI transport, signed in as an operator; no network. The database is
filled with ``--orders`` orders (default 100,000) spread over 30 days, each with one payment
attempt and its ``created`` event, two thirds paid (with ``paid`` event and transaction_id),
one in 50 refunded, plus 200 alerts and 2,000 refused notifications.

Run: ``.venv/bin/python benchmarks/bench_console.py`` (SQLite in a temporary folder) and
``--postgres-url postgresql+psycopg://...`` for PostgreSQL (a fresh database is made there and
dropped after). ``--runs N`` requests per page (default 40). Prints one line per page: the
wall time of the request (what an operator waits) and the process's CPU time for it (the
service's work, all threads; less disturbed by other load on the machine), p50 and p95.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.web.conftest import IsolatedSettings

from scanpay.domain.model import utcnow
from scanpay.domain.operators import Role
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.operators import OperatorStore
from scanpay.store.refunds import refunds
from scanpay.store.tables import (
    events,
    notifications_received,
    orders,
    payment_attempts,
)
from scanpay.web.app import create_app
from scanpay.web.console.passwords import hash_password

BATCH = 5000
PASSWORD = "benchmark-password-1"


def fill(engine: sa.Engine, count: int, now: datetime) -> dict[str, str]:
    """Insert the orders; return one paid order's four numbers."""
    rng = random.Random(12)
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    sample: dict[str, str] = {}
    with engine.begin() as conn:
        for first in range(0, count, BATCH):
            o_rows, a_rows, e_rows, r_rows = [], [], [], []
            for n in range(first, min(first + BATCH, count)):
                created = start + timedelta(seconds=span * n / count)
                paid = n % 3 != 0
                refunded = paid and n % 50 == 1
                status = "refunded" if refunded else "paid" if paid else "pending"
                amount = rng.randint(1, 100_000)
                order_id = f"ord_{n:022d}"
                number = f"sp{created:%y%m%d%H%M%S}{n:016d}"
                txn = f"4200{n:024d}" if paid else None
                o_rows.append({"id": order_id, "amount": amount, "currency": "CNY",
                    "description": f"Item {n % 997}", "status": status, "last_seq": 3 if paid
                    else 1, "created_at": created, "updated_at": created})  # fmt: skip
                a_rows.append({"id": f"att_{n:022d}", "order_id": order_id, "out_trade_no": number,
                    "api_version": "v2", "appid": "wx1", "mchid": "1900000001", "amount": amount,
                    "currency": "CNY", "status": "paid" if paid else "active",
                    "code_url": "weixin://wxpay/bizpayurl?pr=x", "transaction_id": txn,
                    "created_at": created, "updated_at": created,
                    "expires_at": created + timedelta(minutes=15)})  # fmt: skip
                e_rows.append({"order_id": order_id, "seq": 1, "type": "created",
                    "status": "pending", "data": {"out_trade_no": number},
                    "created_at": created})  # fmt: skip
                if paid:
                    at = created + timedelta(seconds=rng.randint(5, 300))
                    e_rows.append({"order_id": order_id, "seq": 2, "type": "paid",
                        "status": "paid", "data": {"out_trade_no": number,
                        "transaction_id": txn}, "created_at": at})  # fmt: skip
                if refunded:
                    r_rows.append({"id": f"rfd_{n:022d}", "order_id": order_id,
                        "attempt_id": f"att_{n:022d}", "out_trade_no": number,
                        "out_refund_no": f"rf{n:020d}", "amount": amount, "total": amount,
                        "currency": "CNY", "reason": "bench", "status": "success",
                        "settles_order": True, "fingerprint": "f" * 64, "created_at": created,
                        "updated_at": created})  # fmt: skip
                if refunded and not sample:
                    sample = {"id": order_id, "out_trade_no": number, "transaction_id": txn or "",
                              "out_refund_no": f"rf{n:020d}"}  # fmt: skip
            conn.execute(sa.insert(orders), o_rows)
            conn.execute(sa.insert(payment_attempts), a_rows)
            conn.execute(sa.insert(events), e_rows)
            if r_rows:
                conn.execute(sa.insert(refunds), r_rows)
        conn.execute(
            sa.insert(events),
            [{"order_id": None, "seq": 0, "type": "alert", "status": None,
              "data": {"reason": "unknown_out_trade_no", "out_trade_no": f"sp{i:028d}"},
              "created_at": now - timedelta(minutes=i)} for i in range(200)],
        )  # fmt: skip
        conn.execute(
            sa.insert(notifications_received),
            [{"api": "v2-payment", "received_at": now - timedelta(seconds=i * 30),
              "out_trade_no": None, "body": b"<xml>forged</xml>",
              "outcome": rng.choice(["bad_signature", "malformed"]), "detail": "bench"}
             for i in range(2000)],
        )  # fmt: skip
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return sample


Result = tuple[str, float, float, float, float, int]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)]


async def measure(url: str, count: int, runs: int) -> list[Result]:
    engine = make_engine(url)
    upgrade(engine)
    now = utcnow()
    began = time.perf_counter()
    sample = fill(engine, count, now)
    print(f"  filled {count} orders in {time.perf_counter() - began:.0f} s", flush=True)
    OperatorStore(engine).add("bench", Role.ADMIN, hash_password(PASSWORD), now)
    engine.dispose()
    settings = IsolatedSettings(
        database_url=url,
        shop_api_key="shop-key-for-the-benchmark-0123",
        wechat_base_url="http://127.0.0.1:9",
        appid="wx1",
        mchid="1900000001",
        api_v2_key="k" * 32,
        reconciler_enabled=False,
    )
    app = create_app(settings)
    day = (now - timedelta(days=3)).astimezone(app.state.console.zone).date().isoformat()
    pages = {
        "orders, first page": "/console/orders",
        "orders, status=paid": "/console/orders?status=paid",
        "orders, one day": f"/console/orders?from={day}&to={day}",
        "orders, amount 100-200 yuan": "/console/orders?min=100&max=200",
        "orders, paid + amount + 7 days": "/console/orders?status=paid&min=500&from="
        + (now - timedelta(days=7)).date().isoformat(),
        "orders, 20th page (cursor)": "",
        "search: order id": f"/console/orders?q={sample['id']}",
        "search: out_trade_no": f"/console/orders?q={sample['out_trade_no']}",
        "search: transaction_id": f"/console/orders?q={sample['transaction_id']}",
        "search: out_refund_no": f"/console/orders?q={sample['out_refund_no']}",
        "one order's story": f"/console/orders/{sample['id']}",
        "today at a glance": "/console",
        "alerts": "/console/alerts",
        "refused notifications": "/console/notifications",
    }
    results = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        sign_in = await http.get("/console/sign-in")
        token = sign_in.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = await http.post("/console/sign-in",
            data={"csrf_token": token, "name": "bench", "password": PASSWORD})  # fmt: skip
        assert answer.status_code == 303, answer.text
        link = "/console/orders"
        for _ in range(19):  # follow "older orders" 19 times
            body = (await http.get(link)).text
            link = body.split('href="/console/orders?cursor=')[1].split('"')[0]
            link = "/console/orders?cursor=" + link.replace("&amp;", "&")
        pages["orders, 20th page (cursor)"] = link
        for name, path in pages.items():
            wall, cpu = [], []
            for i in range(runs + 3):
                c0, t0 = time.process_time(), time.perf_counter()
                response = await http.get(path)
                elapsed = (time.perf_counter() - t0) * 1000
                used = (time.process_time() - c0) * 1000
                assert response.status_code == 200, (name, response.status_code)
                if i >= 3:  # warm-up
                    wall.append(elapsed)
                    cpu.append(used)
            rows = response.text.count('class="order-link"')
            results.append(
                (name, statistics.median(wall), p95(wall), statistics.median(cpu), p95(cpu), rows)
            )
    await app.state.scanpay.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, {args.orders} orders")
    if args.postgres_url:
        name = "scanpay_bench_" + secrets.token_hex(4)
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.make_url(args.postgres_url).set(database=name).render_as_string(False)
        label = "PostgreSQL"
    else:
        folder = tempfile.mkdtemp(prefix="bench-console-")
        url = f"sqlite:///{folder}/console.sqlite3"
        label = "SQLite"
    try:
        results = asyncio.run(measure(url, args.orders, args.runs))
    finally:
        if args.postgres_url:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{label} (load average {load}): page | wall p50, p95 ms | CPU p50, p95 ms | orders")
    for name, w50, w95, c50, c95, rows in results:
        print(f"  {name:32s} {w50:7.1f} {w95:7.1f}   {c50:7.1f} {c95:7.1f}   {rows:3d}")


if __name__ == "__main__":
    main()
