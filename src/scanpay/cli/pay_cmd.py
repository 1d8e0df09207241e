"""``scanpay pay``: act as the shopper's phone against a running simulator.

Calls ``POST /sim/pay`` and prints the answer. Exit status 0 when the simulator applied the
outcome (paid, cancelled, balance short), 1 when it refused (unknown, closed, expired or
already paid order), 2 when the simulator could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from scanpay.simulator import PayOutcome


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--simulator", default="http://127.0.0.1:8090", help="simulator origin (URL)"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--code-url", help="the weixin:// code from the QR")
    target.add_argument("--out-trade-no", help="the merchant's order number")
    parser.add_argument(
        "--outcome",
        choices=[o.value for o in PayOutcome],
        default=PayOutcome.SUCCESS.value,
        help="what the payer does (default: success)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def run(args: argparse.Namespace) -> int:
    payload = {"outcome": args.outcome}
    if args.code_url:
        payload["code_url"] = args.code_url
    else:
        payload["out_trade_no"] = args.out_trade_no
    url = args.simulator.rstrip("/") + "/sim/pay"
    try:
        response = httpx.post(url, json=payload, timeout=10.0)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"scanpay pay: cannot use {url}: {type(exc).__name__}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error", "") if isinstance(answer, dict) else ""
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        print(f"refused: {error}: {message}", file=sys.stderr)
        return 1
    if not args.json:
        paid = "paid" if answer.get("paid") else "not paid"
        print(
            f"{answer['out_trade_no']}: {paid} ({answer['trade_state']}), "
            f"{answer['message']}; transaction_id={answer.get('transaction_id') or '-'}"
        )
    return 0
