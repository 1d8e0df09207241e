"""The payment notification's store transaction on SQLite, per notification: through
SQLAlchemy Core (one transaction each), and through ``sqlite3`` directly with group commit
at batch sizes 1, 8 and 64 (what :class:`scanpay.store.sql.SqlStore` does on its database
thread). The database is a real file (WAL, ``synchronous=NORMAL``), as the service uses it.

Run: ``.venv/bin/python benchmarks/bench_settle.py`` (a few seconds; ``--orders N``).
Rounds alternate between the ways, each on fresh orders; the best round is reported with the
median, and the ratio to the SQLAlchemy path.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentReport,
    ReportSource,
)
from scanpay.domain.ports import ReceivedNotification
from scanpay.domain.service import ReportOutcome, ReportVerdict
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.settle import SettleRequest, SqliteSettler
from scanpay.store.sql import SqlStore
from scanpay.wechat.states import TradeState

NOW = datetime.now(UTC)
BODY = b"<xml>" + b"x" * 900 + b"</xml>"  # about a v2 notification's size


def judge(attempt: PaymentAttempt, status: OrderStatus) -> ReportOutcome | None:
    if status is OrderStatus.PENDING and attempt.status is AttemptStatus.ACTIVE:
        return ReportOutcome(ReportVerdict.APPLIED, "payment_succeeded", attempt.order_id)
    return None


def orders(store: SqlStore, first: int, count: int) -> list[SettleRequest]:
    requests = []
    for n in range(first, first + count):
        order = Order(f"ord_{n:022d}", 100, "Tea", OrderStatus.PENDING, NOW, NOW)
        attempt = PaymentAttempt(
            id=f"att_{n:022d}", order_id=order.id, out_trade_no=f"sp{n:030d}",
            api_version=ApiVersion.V2, appid="wx0001", mchid="1900000001", amount=100,
            currency="CNY", status=AttemptStatus.ACTIVE, created_at=NOW, updated_at=NOW,
            expires_at=NOW + timedelta(minutes=10),
        )  # fmt: skip
        store.create_order_sync(order, attempt, None)
        report = PaymentReport(
            attempt.out_trade_no, TradeState.SUCCESS, 100, "CNY", f"42{n:026d}",
            "wx0001", "1900000001", ReportSource.NOTIFICATION_V2,
        )  # fmt: skip
        data = {"out_trade_no": attempt.out_trade_no, "source": "notification_v2"}
        receipt = ReceivedNotification("v2-payment", BODY, "", "", attempt.out_trade_no)
        requests.append(SettleRequest(report, judge, Trigger.PAYMENT_SUCCEEDED, data, receipt))
    return requests


def timed(run: Callable[[Sequence[SettleRequest]], object], requests: list[SettleRequest],
          batch: int) -> float:  # fmt: skip
    start = time.perf_counter()
    for i in range(0, len(requests), batch):
        run(requests[i : i + batch])
    return (time.perf_counter() - start) / len(requests) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=640, help="notifications per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scanpay-bench-settle-"))
    engine = make_engine(f"sqlite:///{folder / 'shop.sqlite3'}")
    upgrade(engine)
    store = SqlStore(engine)
    raw = engine.raw_connection()  # configured as the store's own (autocommit, WAL, NORMAL)
    if not isinstance(raw.driver_connection, sqlite3.Connection):
        raise SystemExit("needs the sqlite3 driver")
    settler = SqliteSettler(raw.driver_connection, lambda: NOW)

    def alchemy(requests: Sequence[SettleRequest]) -> None:
        for request in requests:
            store.settle_payment_sync(*request)

    ways: dict[str, tuple[Callable[[Sequence[SettleRequest]], object], int]] = {
        "SQLAlchemy Core, 1 per transaction": (alchemy, 1),
        "sqlite3, group commit, batch 1": (settler.run_batch, 1),
        "sqlite3, group commit, batch 8": (settler.run_batch, 8),
        "sqlite3, group commit, batch 64": (settler.run_batch, 64),
    }
    figures: dict[str, list[float]] = {name: [] for name in ways}
    first = 0
    for _ in range(args.rounds):
        for name, (run, batch) in ways.items():
            requests = orders(store, first, args.orders)
            first += args.orders
            figures[name].append(timed(run, requests, batch))
    raw.close()
    store.close()
    print(f"# {platform.platform()}, Python {platform.python_version()}, SQLite "
          f"{sqlite3.sqlite_version}; {args.orders} notifications x "
          f"{args.rounds} rounds per way")  # fmt: skip
    base = min(figures["SQLAlchemy Core, 1 per transaction"])
    print(f"{'way':40} {'best us':>9} {'median us':>10} {'x SQLAlchemy':>13}")
    for name, values in figures.items():
        best = min(values)
        print(f"{name:40} {best:9.1f} {statistics.median(values):10.1f} {best / base:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
