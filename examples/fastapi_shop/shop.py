"""A minimal shop on FastAPI that takes WeChat Pay through scanpay and fulfils on webhooks.

What it shows: create an order through the shop API, send the shopper to scanpay's checkout
page, and fulfil when the signed ``order.paid`` webhook arrives — exactly once, however many
times it is delivered (the event id is recorded in the same transaction as the fulfilment).
No dependency beyond what scanpay already brings (FastAPI, httpx, uvicorn); webhooks are
verified with scanpay's standard-library helper (``standardwebhooks`` works the same way).

Run it next to ``scanpay demo`` (which prints its shop API key's file)::

    SCANPAY_SHOP_API_KEY=$(cat var/demo/shop_api_key) \\
    uvicorn shop:app --app-dir examples/fastapi_shop --port 8000

At start-up it registers ``SHOP_URL/webhooks`` as a webhook endpoint for ``order.paid`` and
keeps the signing secret it gets back (set ``SCANPAY_WEBHOOK_SECRET`` to use the endpoint from
scanpay's settings instead). Settings: ``SCANPAY_URL`` (http://127.0.0.1:8080), ``SHOP_URL``
(http://127.0.0.1:8000), ``SHOP_DB`` (shop.sqlite3).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from scanpay.webhooks.signing import WebhookVerificationError, verify

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,            -- scanpay's order id
    item TEXT NOT NULL,
    fulfilments INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS processed_events (
    id TEXT PRIMARY KEY             -- webhook-id: each event is handled once
);
"""


def create_shop(scanpay_url: str, api_key: str, shop_url: str, db_path: str) -> FastAPI:
    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.executescript(SCHEMA)
    api = httpx.AsyncClient(
        base_url=scanpay_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=15
    )
    state: dict[str, Any] = {"secret": os.environ.get("SCANPAY_WEBHOOK_SECRET")}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not state["secret"]:
            created = await api.post(
                "/api/webhook-endpoints",
                json={"url": f"{shop_url}/webhooks", "event_types": ["order.paid"]},
            )
            created.raise_for_status()
            state["secret"] = created.json()["secret"]  # shown once: keep it
        yield
        await api.aclose()

    app = FastAPI(title="Tea shop", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        return (
            "<!doctype html><title>Tea shop</title><h1>Green tea, 250 g — ¥0.01</h1>"
            '<form method="post" action="/buy"><button>Buy with WeChat Pay</button></form>'
        )

    @app.post("/buy")
    async def buy() -> RedirectResponse:
        answer = await api.post(
            "/api/orders",
            json={"amount": 1, "description": "Green tea, 250 g", "return_url": shop_url},
            headers={"Idempotency-Key": secrets.token_hex(16)},
        )
        answer.raise_for_status()
        order = answer.json()
        db.execute("INSERT INTO orders (id, item) VALUES (?, ?)", (order["id"], "green tea"))
        return RedirectResponse(order["checkout_url"], status_code=303)

    @app.post("/webhooks")
    async def webhooks(request: Request) -> Response:
        body = await request.body()  # verify the exact bytes, before parsing
        try:
            event_id = verify(state["secret"], request.headers, body)
        except WebhookVerificationError:
            raise HTTPException(400, "bad signature") from None
        event = await request.json()
        if event["type"] == "order.paid":
            fulfil(event_id, event["data"]["id"])
        return Response(status_code=204)

    def fulfil(event_id: str, order_id: str) -> None:
        """Record the event and ship, in one transaction: a repeat changes nothing."""
        db.execute("BEGIN IMMEDIATE")
        try:
            seen = db.execute("INSERT OR IGNORE INTO processed_events VALUES (?)", (event_id,))
            if seen.rowcount == 1:
                db.execute(
                    "UPDATE orders SET fulfilments = fulfilments + 1 WHERE id = ?", (order_id,)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        row = db.execute("SELECT fulfilments FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise HTTPException(404, "no such order")
        return {"id": order_id, "fulfilled": row[0] > 0, "fulfilments": row[0]}

    return app


def _from_environment() -> FastAPI:
    return create_shop(
        os.environ.get("SCANPAY_URL", "http://127.0.0.1:8080"),
        os.environ.get("SCANPAY_SHOP_API_KEY", ""),
        os.environ.get("SHOP_URL", "http://127.0.0.1:8000"),
        os.environ.get("SHOP_DB", "shop.sqlite3"),
    )


if os.environ.get("SCANPAY_SHOP_API_KEY"):
    app = _from_environment()
