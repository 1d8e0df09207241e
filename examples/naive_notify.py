"""A deliberately naive WeChat Pay API v2 notification handler. DO NOT COPY IT.

It checks the signature and nothing else: no amount, no merchant or app check, no duplicate
handling, and it lets the XML parser expand entities. ``scanpay doctor`` finds each of these
(docs/simulator.md, "Check your notification handler: scanpay doctor"). Run it with the
simulator's API v2 key::

    NAIVE_API_V2_KEY=<api_v2_key from merchant.json> uvicorn examples.naive_notify:app --port 8000
"""

import hashlib
import os
import time
import xml.etree.ElementTree as ET

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

orders: dict[str, dict[str, object]] = {}


async def notify(request: Request) -> Response:
    fields = {e.tag: e.text or "" for e in ET.fromstring(await request.body())}
    signed = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign" and v)
    key = os.environ.get("NAIVE_API_V2_KEY", "")
    if hashlib.md5(f"{signed}&key={key}".encode()).hexdigest().upper() != fields.get("sign"):
        return Response("<xml><return_code>FAIL</return_code></xml>", 400)
    orders[fields["out_trade_no"]] = {"status": "paid", "paid_at": time.time()}  # ship it!
    return Response("<xml><return_code>SUCCESS</return_code></xml>", media_type="text/xml")


async def status(request: Request) -> JSONResponse:
    return JSONResponse(orders.get(request.path_params["no"], {"status": "unpaid"}))


app = Starlette(
    routes=[
        Route("/notify", notify, methods=["POST"]),
        Route("/orders/{no}/status", status),
    ]
)
