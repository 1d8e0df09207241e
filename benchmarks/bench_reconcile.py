"""A 100,000-row trade bill reconciled against a 100,000-order ledger: time and peak memory.

The ledger is a real SQLite file (the service's schema, migrated) holding ``--orders`` paid
orders and their attempts, plus 2% of them refunded; the bill is the same day's ALL bill as
WeChat writes it (every field back-ticked, yuan amounts, summary row), with a few differences
of every kind planted in it. What is measured is :meth:`scanpay.reconcile.service.Reconciler.run`
from the downloaded file's bytes to the stored report: reading the ledger window, streaming the
bill through :class:`~scanpay.wechat.bill.BillReader`, matching, storing the report.

Run: ``.venv/bin/python benchmarks/bench_reconcile.py`` (about a minute, most of it building the
ledger; ``--orders N``, ``--rounds N``). Prints the best and median wall time, the Python heap's
peak during one run (``tracemalloc``, a separate run since tracing slows it) and the process's
peak RSS (``ru_maxrss``, which includes building the fixtures).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from scanpay.domain.reconciliation import Report
from scanpay.reconcile.service import Reconciler
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.store.refunds import refunds
from scanpay.store.tables import orders, payment_attempts
from scanpay.wechat.bill import ALL_COLUMNS, SUMMARY_COLUMNS
from scanpay.wechat.fields import BEIJING, fen_to_yuan

DAY = date(2025, 3, 1)
PLANTED = 10  # of each difference kind
CHUNK = 64 * 1024


class FileSource:
    """The bill, copied chunk by chunk into the reconciler's file as a client streams it."""

    api_version = "v2"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def trade_bill(self, day: date, out: BinaryIO) -> None:
        with self.path.open("rb") as source:
            while chunk := source.read(CHUNK):
                out.write(chunk)


def build(engine: sa.Engine, count: int) -> bytes:
    """Insert the ledger and write the bill (with ``PLANTED`` differences of each kind)."""
    start = datetime(2025, 3, 1, 0, 5, tzinfo=BEIJING).astimezone(UTC)
    step = (23 * 3600) / count
    lines = [",".join(ALL_COLUMNS)]
    rows = fees = settlement = refunded = 0
    order_rows, attempt_rows, refund_rows = [], [], []

    def bill_line(**v: str) -> str:
        values = dict.fromkeys(ALL_COLUMNS, "")
        values.update(
            {"公众账号ID": "wx0000000000000001", "商户号": "1900000001", "特约商户号": "0",
             "交易类型": "NATIVE", "付款银行": "OTHERS", "货币种类": "CNY",
             "商品名称": "绿茶 250 克", "费率": "0.60%", "代金券金额": "0.00",
             "充值券退款金额": "0.00"}
        )  # fmt: skip
        values.update(v)
        return ",".join("`" + values[name] for name in ALL_COLUMNS)

    for i in range(count):
        at = start + timedelta(seconds=i * step)
        number, amount = f"sp{i:010d}bench", 100 + i % 5000
        transaction_id = f"4200{i:024d}"
        order_id, attempt_id = f"ord_{i:020d}", f"att_{i:020d}"
        kind = i // PLANTED if i < 5 * PLANTED else -1
        order_rows.append({"id": order_id, "amount": amount, "currency": "CNY",
                           "description": "绿茶", "status": "paid", "last_seq": 1,
                           "created_at": at, "updated_at": at})  # fmt: skip
        attempt_rows.append(
            {"id": attempt_id, "order_id": order_id, "out_trade_no": number,
             "api_version": "v2", "appid": "wx0000000000000001", "mchid": "1900000001",
             "amount": amount, "currency": "CNY",
             "status": "closed" if kind == 0 else "paid", "transaction_id": transaction_id,
             "created_at": at, "updated_at": at + timedelta(seconds=2)}
        )  # fmt: skip
        if kind == 1:
            continue  # missing from the bill: missing_remote
        shown = amount + 1 if kind == 2 else amount
        fee = (shown * 6 + 500) // 1000
        stamp = at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            bill_line(交易时间=stamp, 微信订单号=transaction_id, 商户订单号=number,
                      用户标识="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                      交易状态="REVOKED" if kind == 3 else "SUCCESS",
                      应结订单金额=fen_to_yuan(shown), 微信退款单号="0", 商户退款单号="0",
                      退款金额="0.00", 手续费=fen_to_yuan(fee, 5), 订单金额=fen_to_yuan(shown),
                      申请退款金额="0.00")
        )  # fmt: skip
        rows, fees, settlement = rows + 1, fees + fee, settlement + shown
        if i % 50 == 7 or kind == 4:
            refund, no = amount // 2, f"{number}r"
            refund_rows.append(
                {"id": f"rfd_{i:020d}", "order_id": order_id, "attempt_id": attempt_id,
                 "out_trade_no": number, "out_refund_no": no, "amount": refund,
                 "total": amount, "currency": "CNY", "reason": "", "status": "success",
                 "settles_order": False, "fingerprint": "f" * 32,
                 "created_at": at, "updated_at": at + timedelta(seconds=60)}
            )  # fmt: skip
            shown_refund = refund + 1 if kind == 4 else refund
            lines.append(
                bill_line(交易时间=stamp, 微信订单号=transaction_id, 商户订单号=number,
                          交易状态="REFUND", 应结订单金额="0.00", 微信退款单号=f"50{i:027d}",
                          商户退款单号=no, 退款金额=fen_to_yuan(shown_refund),
                          退款类型="ORIGINAL", 退款状态="SUCCESS", 手续费="0.00000",
                          订单金额="0.00", 申请退款金额=fen_to_yuan(shown_refund))
            )  # fmt: skip
            rows, refunded = rows + 1, refunded + shown_refund
    for n in range(1, PLANTED + 1):  # payments nobody ordered: missing_local
        lines.append(
            bill_line(交易时间="2025-03-01 12:00:00", 微信订单号=f"4299{n:024d}",
                      商户订单号=f"stranger{n:04d}", 交易状态="SUCCESS",
                      应结订单金额="1.00", 微信退款单号="0", 商户退款单号="0", 退款金额="0.00",
                      手续费="0.01000", 订单金额="1.00", 申请退款金额="0.00")
        )  # fmt: skip
        rows, fees, settlement = rows + 1, fees + 1, settlement + 100
    lines.append(",".join(SUMMARY_COLUMNS))
    totals = [str(rows), fen_to_yuan(settlement), fen_to_yuan(refunded), "0.00",
              fen_to_yuan(fees), fen_to_yuan(settlement), fen_to_yuan(refunded)]  # fmt: skip
    lines.append(",".join("`" + value for value in totals))
    with engine.begin() as conn:
        for table, batch in ((orders, order_rows), (payment_attempts, attempt_rows),
                             (refunds, refund_rows)):  # fmt: skip
            for offset in range(0, len(batch), 10_000):
                conn.execute(sa.insert(table), batch[offset : offset + 10_000])
    return ("\n".join(lines) + "\n").encode()


def once(engine: sa.Engine, bill: Path, now: datetime) -> Report:
    store = ReconciliationStore(engine, clock=lambda: now)
    reconciler = Reconciler(store, FileSource(bill), clock=lambda: now)
    return asyncio.run(reconciler.run(DAY))


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` would include the parent's
    peak, which Linux carries across ``execve``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(database: Path, bill: Path, rounds: int) -> None:
    """The child process: only the runs, so its peak RSS is the reconciliation's."""
    engine = make_engine(f"sqlite:///{database}")
    before = peak_rss_mb()
    now = datetime(2025, 3, 2, 10, 30, tzinfo=BEIJING).astimezone(UTC)
    times, cpu = [], []
    for _ in range(rounds):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        report = once(engine, bill, now)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    rss = peak_rss_mb()
    counts = {kind: n for kind, n in report.counts().items() if n}
    print(f"report: {report.status.value}, {report.rows} rows, differences {counts}, "
          f"held {len(report.held)}")  # fmt: skip
    print(f"time: best {min(times):.2f} s, median {statistics.median(times):.2f} s wall; "
          f"CPU best {min(cpu):.2f} s ({rounds} rounds; load average "
          f"{Path('/proc/loadavg').read_text().split()[0]})")  # fmt: skip
    print(f"memory: process peak RSS {rss:.0f} MB (before the first run {before:.0f} MB)")
    gc.collect()
    tracemalloc.start()
    once(engine, bill, now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory: Python heap peak during one run {peak / 1e6:.0f} MB (tracemalloc)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure[0], args.measure[1], args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="scanpay-bench-") as folder:
        database, bill = Path(folder) / "shop.sqlite3", Path(folder) / "bill.csv"
        engine = make_engine(f"sqlite:///{database}")
        upgrade(engine)
        built = time.perf_counter()
        data = build(engine, args.orders)
        engine.dispose()
        bill.write_bytes(data)
        built = time.perf_counter() - built
        lines = data.count(b"\n") - 3
        print(f"python {sys.version.split()[0]} on {platform.machine()}, "
              f"{args.orders} orders, bill {lines} rows / "
              f"{len(data) / 1e6:.1f} MB, fixtures built in {built:.1f} s")  # fmt: skip
        del data
        command = [sys.executable, __file__, "--rounds", str(args.rounds), "--measure",
                   str(database), str(bill)]  # fmt: skip
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
