"""``scanpay reconcile --date YYYY-MM-DD [--format text|json]``: one day against the bill.

Downloads the day's trade bill with the configured API version, matches it against the
ledger, stores the report (replacing an earlier run of that day) and prints it. Exit status:
0 everything matched, 1 differences found, 2 could not reconcile (the reason is printed:
no bill yet, a bad date, WeChat or the database unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Final, TextIO

import httpx

from scanpay.cli.serve_cmd import load_settings
from scanpay.config import Settings
from scanpay.domain.model import utcnow
from scanpay.domain.reconciliation import Report, ReportStatus, parse_day
from scanpay.errors import ScanpayError
from scanpay.reconcile.service import Reconciler
from scanpay.reconcile.source import ClientBillSource
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.cluster import engine_options
from scanpay.web.wiring import build_wechat

MATCHED: Final = 0
DIFFERENCES: Final = 1
FAILED: Final = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", required=True, help="the Shanghai day, YYYY-MM-DD")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--env-file", type=Path, default=None, help="a dotenv file with SCANPAY_* settings"
    )


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen / 100:.2f}"


def render_text(report: Report) -> str:
    bill, ledger = report.bill, report.ledger
    lines = [
        f"reconciliation {report.day.isoformat()} (API {report.api_version}): "
        f"{report.status.value}, {report.rows} bill rows",
        f"  {'':10}{'payments':>10}{'amount':>14}{'refunds':>10}{'amount':>14}{'fees':>12}",
    ]
    for name, side in (("bill", bill), ("ledger", ledger)):
        lines.append(
            f"  {name:10}{side.payments:>10}{_yuan(side.payment_amount):>14}"
            f"{side.refunds:>10}{_yuan(side.refund_amount):>14}{_yuan(side.fees):>12}"
        )
    for difference in report.open:
        lines.append(
            f"  {difference.kind.value:16} {difference.entry.value:8} {difference.number}"
            f"  scanpay={_yuan(difference.local_amount)}/{difference.local_status or '-'}"
            f"  wechat={_yuan(difference.remote_amount)}/{difference.remote_status or '-'}"
            + (f"  ({difference.note})" if difference.note else "")
        )
    for held in report.held:
        lines.append(
            f"  held             {held.entry.value:8} {held.number}  scanpay="
            f"{_yuan(held.local_amount)}/{held.local_status or '-'}  not in the bill; reported"
            f" as missing_remote unless a later bill carries it"
        )
    return "\n".join(lines)


async def reconcile(
    settings: Settings,
    day: date,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Report:
    engine = make_engine(settings.database_url, **engine_options(settings))
    try:
        if settings.migrate_on_startup:
            upgrade(engine)
        wechat = build_wechat(settings, transport)
        try:
            source = ClientBillSource(settings.api_version, v2=wechat.v2, v3=wechat.v3)
            store = ReconciliationStore(engine, clock=clock)
            reconciler = Reconciler(
                store, source, clock=clock, hold_days=settings.reconcile_hold_days
            )
            return await reconciler.run(day)
        finally:
            await wechat.aclose()
    finally:
        engine.dispose()


def main(
    settings: Settings,
    day_text: str,
    fmt: str = "text",
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    try:
        report = asyncio.run(
            reconcile(settings, parse_day(day_text), transport=transport, clock=clock)
        )
    except ScanpayError as exc:
        print(f"scanpay reconcile: could not reconcile {day_text}: {exc.code}: {exc}", file=err)
        return FAILED
    print(json.dumps(report.to_json(), ensure_ascii=False, indent=2) if fmt == "json"
          else render_text(report), file=out)  # fmt: skip
    return MATCHED if report.status is ReportStatus.MATCHED else DIFFERENCES


def run(args: argparse.Namespace) -> int:
    return main(load_settings(args.env_file), args.date, args.format)
