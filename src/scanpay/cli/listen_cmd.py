"""``scanpay listen --forward-to URL``: webhooks to a local URL while developing.

Like ``stripe listen``: it connects to a running scanpay service with the shop key, prints a
temporary signing secret, and forwards each new event (read from ``GET /api/events``, so the
service need not reach the developer's machine) to the local URL, signed per Standard
Webhooks with that secret, printing one line per delivery with its status. The secret lives
only in this process (or pass ``--secret`` to keep one across runs).

A service that cannot be reached, times out or answers 5xx (not started yet, restarting,
busy) is asked again after a pause that grows to ``MAX_PAUSE``, with a line on stderr each
time; ``listen`` carries on from where it was. An answer that will not change by asking again
(a wrong key: 401, a bad request) ends it with that answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from scanpay.domain.events import ShopEventType
from scanpay.webhooks.signing import generate_secret, secret_key, sign_headers

FIRST_PAUSE: Final = 0.5
MAX_PAUSE: Final = 5.0
PAGE_KEYS: Final = frozenset({"items", "next_cursor", "has_more"})


class _Unavailable(Exception):
    """The service answered, but 5xx: worth asking again."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--forward-to", required=True, help="local URL to POST events to")
    parser.add_argument("--service", default="http://127.0.0.1:8080", help="scanpay service URL")
    parser.add_argument(
        "--api-key", help="the shop API key (default: the SCANPAY_SHOP_API_KEY variable)"
    )
    parser.add_argument(
        "--events", help="comma-separated types to forward (default: all), e.g. order.paid"
    )
    parser.add_argument("--secret", help="a whsec_ secret to sign with (default: a new one)")
    parser.add_argument(
        "--from-start", action="store_true", help="forward past events too (default: new only)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--max-events", type=int, default=0, help="stop after N (0: never)")


class Listener:
    def __init__(self, args: argparse.Namespace, key: str, secret: str) -> None:
        self.args = args
        self.api = httpx.Client(
            base_url=args.service.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
            trust_env=False,
        )
        self.local = httpx.Client(timeout=15.0, follow_redirects=False, trust_env=False)
        self.secret = secret

    def page(self, after: str) -> dict[str, Any]:
        """The events after ``after``, asking again (with a pause) until the service
        answers; a 4xx ends ``listen``."""
        pause = FIRST_PAUSE
        while True:
            try:
                return self._page(after)
            except (httpx.TransportError, _Unavailable) as exc:
                why = str(exc) if isinstance(exc, _Unavailable) else type(exc).__name__
                print(f"scanpay listen: {self.args.service} did not answer ({why}); "
                      f"trying again in {pause:g} s", file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(pause)
                pause = min(MAX_PAUSE, pause * 2)

    def _page(self, after: str) -> dict[str, Any]:
        params = {"after": after, "limit": "100"}
        if self.args.events:
            params["type"] = self.args.events
        response = self.api.get("/api/events", params=params)
        if response.status_code >= 500:
            raise _Unavailable(f"{response.status_code}")
        if response.status_code != 200:
            raise SystemExit(f"scanpay listen: the service answered {response.status_code}: "
                             f"{response.text[:200]}")  # fmt: skip
        try:
            page: dict[str, Any] = response.json()
            if not isinstance(page.get("items"), list) or not page.keys() >= PAGE_KEYS:
                raise ValueError("not an events page")
        except (ValueError, AttributeError):
            raise SystemExit(f"scanpay listen: {self.args.service} is not a scanpay service "
                             "(its answer is not a list of events)") from None  # fmt: skip
        return page

    def latest(self) -> str:
        cursor = "0"
        while True:
            page = self.page(cursor)
            cursor = str(page["next_cursor"])
            if not page["has_more"]:
                return cursor

    def forward(self, event: dict[str, Any]) -> str:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = sign_headers([self.secret], event["id"], int(time.time()), body)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            answer = self.local.post(self.args.forward_to, content=body, headers=headers)
            status = str(answer.status_code)
        except httpx.HTTPError as exc:
            status = f"failed ({type(exc).__name__})"
        took = int((time.perf_counter() - started) * 1000)
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        return f"{stamp}  --> {event['type']} [{event['id']}]  <-- {status} ({took} ms)"


def run(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("SCANPAY_SHOP_API_KEY")
    if not key:
        print("scanpay listen: give --api-key or set SCANPAY_SHOP_API_KEY", file=sys.stderr)
        return 2
    if args.events:
        known = {t.value for t in ShopEventType}
        unknown = sorted({e.strip() for e in args.events.split(",")} - known)
        if unknown:
            print(f"scanpay listen: unknown event types {unknown}", file=sys.stderr)
            return 2
    secret = args.secret or generate_secret()
    try:
        secret_key(secret)
    except ValueError as exc:
        print(f"scanpay listen: {exc}", file=sys.stderr)
        return 2
    listener = Listener(args, key, secret)
    try:
        cursor = "0" if args.from_start else listener.latest()
        print(f"Ready! Your webhook signing secret is {secret} (^C to quit)", flush=True)
        print(f"Forwarding events from {args.service} to {args.forward_to}", flush=True)
        forwarded = 0
        while True:
            page = listener.page(cursor)
            for event in page["items"]:
                print(listener.forward(event), flush=True)
                forwarded += 1
                if args.max_events and forwarded >= args.max_events:
                    return 0
            cursor = page["next_cursor"]
            if not page["has_more"]:
                time.sleep(args.poll)
    except httpx.HTTPError as exc:  # (what asking again would not mend)
        print(f"scanpay listen: talking to {args.service} failed: {type(exc).__name__}",
              file=sys.stderr)  # fmt: skip
        return 2
    finally:
        listener.api.close()
        listener.local.close()
