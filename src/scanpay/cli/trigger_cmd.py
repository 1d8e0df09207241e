"""``scanpay trigger order.paid``: make an event happen on a service wired to the simulator.

Creates a small test order through the shop API, then (``order.paid``) pays it as the
shopper's phone would through the simulator's ``/sim/pay``, or (``order.closed``) closes it,
and waits until the order shows the new status, so the whole chain — notification, outbox,
webhook or ``scanpay listen`` — can be watched.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

import httpx

TRIGGERS = ("order.paid", "order.closed")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event", choices=TRIGGERS, help="what to make happen")
    parser.add_argument("--service", default="http://127.0.0.1:8080", help="scanpay service URL")
    parser.add_argument("--simulator", default="http://127.0.0.1:8090", help="simulator URL")
    parser.add_argument(
        "--api-key", help="the shop API key (default: the SCANPAY_SHOP_API_KEY variable)"
    )
    parser.add_argument("--amount", type=int, default=1, help="fen (default 1)")


def run(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("SCANPAY_SHOP_API_KEY")
    if not key:
        print("scanpay trigger: give --api-key or set SCANPAY_SHOP_API_KEY", file=sys.stderr)
        return 2
    auth = {"Authorization": f"Bearer {key}"}
    service = args.service.rstrip("/")
    try:
        with httpx.Client(base_url=service, headers=auth, timeout=15.0, trust_env=False) as api:
            created = api.post(
                "/api/orders",
                json={"amount": args.amount, "description": "scanpay trigger"},
                headers={"Idempotency-Key": "trigger-" + secrets.token_hex(8)},
            )
            if created.status_code != 201:
                print(f"scanpay trigger: creating the order: {created.status_code} "
                      f"{created.text[:200]}", file=sys.stderr)  # fmt: skip
                return 1
            order = created.json()
            print(f"created {order['id']} (out_trade_no {order['out_trade_no']})", flush=True)
            if args.event == "order.paid":
                paid = httpx.post(
                    args.simulator.rstrip("/") + "/sim/pay",
                    json={"code_url": order["code_url"]},
                    timeout=15.0,
                    trust_env=False,
                )
                if paid.status_code != 200:
                    print(f"scanpay trigger: the simulator refused: {paid.text[:200]}",
                          file=sys.stderr)  # fmt: skip
                    return 1
                wanted = "paid"
            else:
                closed = api.post(f"/api/orders/{order['id']}/close")
                if closed.status_code != 200:
                    print(f"scanpay trigger: closing: {closed.text[:200]}", file=sys.stderr)
                    return 1
                wanted = "closed"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = api.get(f"/api/orders/{order['id']}").json()["status"]
                if status == wanted:
                    print(f"{order['id']} is {status}: {args.event} is on its way", flush=True)
                    return 0
                time.sleep(0.2)
    except httpx.HTTPError as exc:
        print(f"scanpay trigger: cannot reach the service or simulator: {type(exc).__name__}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"scanpay trigger: {order['id']} did not become {wanted} in 30 s", file=sys.stderr)
    return 1
