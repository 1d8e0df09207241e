"""Metrics and structured logs (issue 9): ``/metrics`` scraped after a scripted flow (the
counters moved by the right amounts), JSON log lines parsed (a v2 and a v3 notification give
the same keys; request ids on every line of a request, its WeChat call included; no secret
in any line)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanpay.observability import logs
from scanpay.observability.logs import NOTIFICATION_KEYS, JsonFormatter, RequestIdFilter
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from tests.simulator.live import free_port
from tests.web.conftest import SHOP_KEY, SettingsFactory, Shop
from tests.web.test_hostile_classes import CASES, v2_builder, v3_builder
from tests.web.v3kit import open_shop

TOKEN = "metrics-token-0123456789"
GENUINE = next(c for c in CASES if c.name == "genuine")
BAD_SIGNATURE = next(c for c in CASES if c.name == "bad signature")


@pytest.fixture
async def shop(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    def with_token(**overrides: Any) -> Any:
        return make_settings(metrics_token=TOKEN, **overrides)

    async for opened in open_shop(with_token, tmp_path, credentials, "v2"):
        yield opened


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger's lines as ``scanpay serve --log-format json`` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def scrape(shop: Shop) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await shop.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return samples(response.text)


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_metrics_after_a_scripted_flow(shop: Shop) -> None:
    assert (await shop.http.get("/metrics")).status_code == 401
    wrong = {"Authorization": "Bearer not-the-metrics-token"}
    assert (await shop.http.get("/metrics", headers=wrong)).status_code == 401
    before = await scrape(shop)

    order = await shop.create_order(1999)  # one prepay call to WeChat
    build = v2_builder(shop)
    body, headers = build(order, GENUINE) or (b"", {})
    for _ in range(2):  # applied, then a duplicate
        assert (await shop.http.post("/notify/v2", content=body, headers=headers)).is_success
    bad, bad_headers = build(order, BAD_SIGNATURE) or (b"", {})
    for _ in range(3):
        await shop.http.post("/notify/v2", content=bad, headers=bad_headers)
    closed = await shop.create_order(500)
    answer = await shop.http.post(f"/api/orders/{closed['id']}/close", headers=shop.auth)
    assert answer.json()["status"] == "closed"

    after = await scrape(shop)

    def moved(name: str, **labels: str) -> float:
        return after.get(key(name, **labels), 0.0) - before.get(key(name, **labels), 0.0)

    notified = "scanpay_notifications_total"
    assert moved(notified, api="v2-payment", outcome="applied") == 1
    assert moved(notified, api="v2-payment", outcome="duplicate") == 1
    assert moved(notified, api="v2-payment", outcome="bad_signature") == 3
    transitions = "scanpay_order_transitions_total"
    assert moved(transitions, source="notification", trigger="payment_succeeded") == 1
    assert moved(transitions, source="shop", trigger="close") == 1
    assert moved(transitions, source="query", trigger="payment_succeeded") == 0
    http = "http_server_request_duration_seconds_count"
    route = {"http_request_method": "POST", "http_response_status_code": "201"}
    assert moved(http, http_route="/api/orders", **route) == 2
    assert moved(http, http_route="/notify/v2", http_request_method="POST",
                 http_response_status_code="401") == 3  # fmt: skip
    order_route = {"http_route": "/api/orders/{order_id}/close", "http_request_method": "POST"}
    assert moved(http, http_response_status_code="200", **order_route) == 1
    calls = "scanpay_wechat_call_duration_seconds_count"
    assert moved(calls, endpoint="/pay/unifiedorder", result="200") == 2
    assert moved(calls, endpoint="/pay/closeorder", result="200") == 1
    assert after[key("scanpay_status_streams_open")] == 0
    assert after[key("scanpay_reconciler_backlog")] == 0  # the closed order needs no query
    assert key("scanpay_reconciler_lag_seconds") in after
    assert after[key("scanpay_refunds_unfinished")] == 0
    # ids never become labels
    assert not any(order["out_trade_no"] in str(labels) for _, labels in after)


async def test_json_lines_have_the_same_keys_for_v2_and_v3(
    shop: Shop,
    json_lines: io.StringIO,
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    v2_order = await shop.create_order(1999)
    request_id = "req-2026-12-03-0001"
    response = await shop.http.post(
        "/api/orders",
        json={"amount": 100, "description": "Tea"},
        headers={**shop.auth, "X-Request-ID": request_id},
    )
    assert response.headers["x-request-id"] == request_id
    made = await shop.http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32  # not accepted: one is made
    v2 = v2_builder(shop)
    for case in (GENUINE, BAD_SIGNATURE):
        body, headers = v2(v2_order, case) or (b"", {})
        await shop.http.post("/notify/v2", content=body, headers=headers)
    secrets_seen = [SHOP_KEY, shop.sim.credentials.api_v2_key.reveal()]

    def v3_settings(**overrides: Any) -> Any:
        return make_settings(database_url=f"sqlite:///{tmp_path / 'v3.sqlite3'}", **overrides)

    async for v3_shop in open_shop(v3_settings, tmp_path, credentials, "v3-public-key"):
        v3_order = await v3_shop.create_order(1999)
        v3 = v3_builder(v3_shop, credentials[1])
        for case in (GENUINE, BAD_SIGNATURE):
            body, headers = v3(v3_order, case) or (b"", {})
            await v3_shop.http.post("/notify/v3", content=body, headers=headers)
            secrets_seen.append(headers["Wechatpay-Signature"])
        secrets_seen.append(v3_shop.sim.credentials.api_v3_key.reveal())

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    notes = [line for line in lines if line["logger"] == "scanpay.web.notify"]
    by_api = {(n["api"], n["outcome"]): n for n in notes}
    assert set(by_api) >= {("v2-payment", "applied"), ("v2-payment", "bad_signature"),
                           ("v3-payment", "applied"), ("v3", "bad_signature")}  # fmt: skip
    shapes = {frozenset(n) for n in notes}
    assert len(shapes) == 1  # the same keys for every notification line, v2 and v3
    assert set(NOTIFICATION_KEYS) | {"request_id"} <= next(iter(shapes))
    assert by_api[("v2-payment", "applied")]["out_trade_no"] == v2_order["out_trade_no"]
    assert by_api[("v2-payment", "applied")]["order_id"] == v2_order["id"]
    assert by_api[("v3-payment", "applied")]["order_id"] is not None
    assert all(n["client"] == "127.0.0.1" and n["request_id"] for n in notes)
    # every line of the tagged request carries its id, the WeChat call included
    tagged = [line for line in lines if line["request_id"] == request_id]
    assert {line["logger"] for line in tagged} >= {"scanpay.access", "scanpay.wechat"}
    access = [line for line in lines if line["logger"] == "scanpay.access"]
    assert all({"method", "route", "status", "duration_ms", "client"} <= set(a) for a in access)
    text = json_lines.getvalue()
    for secret in secrets_seen:
        assert secret not in text


async def test_metrics_on_a_loopback_port_without_a_token(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    port = free_port()

    def on_port(**overrides: Any) -> Any:
        return make_settings(metrics_port=port, **overrides)

    async for shop in open_shop(on_port, tmp_path, credentials, "v2"):
        assert (await shop.http.get("/metrics")).status_code == 404  # not on the service
        await shop.http.post("/notify/v2", content=b"junk", headers={"Content-Type": "text/xml"})
        async with shop.app.router.lifespan_context(shop.app), httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        found = samples(answer.text)
        assert found[key("scanpay_notifications_total", api="v2-payment", outcome="malformed")]
        assert key("scanpay_reconciler_backlog") in found


def test_serve_logs_on_one_stream_without_httpx_lines() -> None:
    """``scanpay serve``'s logging: uvicorn's, the access line and scanpay's own on one
    stream, httpx's per-call line off, JSON when asked."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging._srcfile)
    saved_loggers = {
        name: (logging.getLogger(name).level, logging.getLogger(name).disabled,
               list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")
    }  # fmt: skip
    stream = io.StringIO()
    try:
        logs.configure("json", "INFO", stream=stream)
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("uvicorn.access").info("uvicorn's own access line")
        logging.getLogger("scanpay.access").info("request", extra={"status": 200})
        logging.getLogger("httpx").info("HTTP Request: POST http://wechat.test/pay/orderquery")
        logging.getLogger("scanpay.wechat").debug("wechat call")  # DEBUG: below INFO
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging._srcfile = saved[2]
        for name, (level, disabled, handlers, propagate) in saved_loggers.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled
            logger.handlers[:] = handlers
            logger.propagate = propagate
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Application startup complete."),
        ("scanpay.access", "request"),
    ]
    assert lines[1]["status"] == 200
