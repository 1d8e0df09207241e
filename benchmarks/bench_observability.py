"""What observability costs one request, measured alone (issue 9).

Run: ``.venv/bin/python benchmarks/bench_observability.py`` (about 20 seconds).

``bench_service.py`` measures the whole service with observability off and on, but on a busy
two-core machine its CPU-per-request figures move by more than the difference sought. This
measures the added work itself, in CPU time (``time.process_time``), many times over:

* *observer*: :class:`scanpay.observability.http.RequestObserver` around an ASGI app that
  answers at once (request id, the duration histogram, the access line), against the bare app;
* *notification line*: one :func:`scanpay.observability.logs.note_notification` call (log
  line and counter), JSON against text;

each with the logging of ``scanpay serve --log-format json|text`` writing to ``/dev/null``.
Medians of ``--repeats`` runs of ``--requests`` each; the sum is what ``json`` + observation
adds to one notification over ``text`` without observation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from scanpay.observability import logs
from scanpay.observability.http import RequestObserver
from scanpay.observability.logs import note_notification

SCOPE = {
    "type": "http", "method": "POST", "path": "/notify/v2", "headers": [], "query_string": b"",
    "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080), "scheme": "http",
}  # fmt: skip


async def bare(_scope: object, _receive: object, send: Callable[[object], Awaitable[None]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(_message: object) -> None:
    return None


async def per_request(observed: bool, requests: int) -> float:
    observer = RequestObserver(("/notify/v2",))
    started = time.process_time()
    for _ in range(requests):
        if observed:
            await observer(dict(SCOPE), receive, send, bare)
        else:
            await bare(dict(SCOPE), receive, send)
    return (time.process_time() - started) / requests * 1e6


def per_line(requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        note_notification("v2-payment", "applied", client="127.0.0.1",
                          out_trade_no="sp261203064501abcdefghijklm", order_id="ord_x",
                          detail="payment_succeeded")  # fmt: skip
    return (time.process_time() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sink = open("/dev/null", "w")  # noqa: SIM115 - the process's log stream, kept open
    figures: dict[str, list[float]] = {"bare": [], "observed": [], "text": [], "json": []}
    for _ in range(args.repeats):
        logs.configure("json", "INFO", stream=sink)
        figures["bare"].append(asyncio.run(per_request(False, args.requests)))
        figures["observed"].append(asyncio.run(per_request(True, args.requests)))
        figures["json"].append(per_line(args.requests))
        logs.configure("text", "INFO", stream=sink)
        figures["text"].append(per_line(args.requests))
    median = {name: statistics.median(values) for name, values in figures.items()}
    observer = median["observed"] - median["bare"]
    line = median["json"] - median["text"]
    print(f"# {args.repeats} x {args.requests} requests; CPU microseconds per request (medians)")
    print(f"observer (request id, histogram, JSON access line): {observer:7.1f}")
    print(f"notification line + counter, text:                  {median['text']:7.1f}")
    print(f"notification line + counter, JSON:                  {median['json']:7.1f}")
    print(f"added per notification (observer + JSON over text): {observer + line:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
