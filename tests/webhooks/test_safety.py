"""Endpoint URLs that may not receive webhooks: refused at creation (422, the reason, nothing
stored) and again when connecting (the sender checks the address it connects to)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scanpay.webhooks.safety import UnsafeUrlError, check_url, parse_url
from scanpay.webhooks.sender import Sender
from tests.webhooks.conftest import AUTH, HookedShop, open_hooked
from tests.webhooks.receiver import Receiver

# URL -> what the error says (the address and its kind)
REFUSED = [
    ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8000/hook", "::1 is a loopback address"),
    ("http://localhost:8000/hook", "localhost resolves to"),  # a name resolving to loopback
    ("http://[::ffff:192.168.1.1]/hook", "::ffff:c0a8:101 is a private address"),
    ("http://100.64.0.1/hook", "100.64.0.1 is not a public address"),
    ("http://0.0.0.0/hook", "0.0.0.0 is the unspecified address"),
    ("ftp://example.com/hook", "must start with http:// or https://"),
    ("http://user:pw@example.com/hook", "must not contain a user name or password"),
    ("http:///hook", "has no host"),
    ("http://example.com:99999/", "port"),
    ("http://shop.example/回调", "must be ASCII"),  # would not fit in an HTTP/1.1 request line
    ("http://商店.example/hook", "xn-- (punycode) form"),
]


@pytest.fixture
async def strict(tmp_path: Path, receiver: Receiver) -> AsyncIterator[HookedShop]:
    # no endpoint from settings (it would be loopback), private addresses not allowed
    async for shop in open_hooked(
        tmp_path, receiver, webhook_url=None, webhook_secret=None, webhook_allow_private=False
    ):
        yield shop


async def test_refused_at_creation(strict: HookedShop) -> None:
    table = []
    for url, reason in REFUSED:
        response = await strict.http.post("/api/webhook-endpoints", json={"url": url}, headers=AUTH)
        error = response.json()["error"]
        table.append((url, response.status_code, error["code"], error["message"]))
        assert response.status_code == 422, url
        assert reason in error["message"], (url, error)
        assert "whsec_" not in response.text
    assert {row[2] for row in table if row[0].startswith("http://1")} == {"WEBHOOK_URL_REFUSED"}
    assert (await strict.http.get("/api/webhook-endpoints", headers=AUTH)).json()["items"] == []
    assert strict.count("webhook_endpoints") == 0


async def test_refused_at_connect_time(strict: HookedShop, receiver: Receiver) -> None:
    # an endpoint accepted while private addresses were allowed (or a name that later points
    # to one): the sender checks the address it is about to connect to and refuses
    sender = Sender(allow_private=False)
    try:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            answer = await sender.post(url, {"webhook-id": "evt_x"}, b"{}")
            assert answer.status is None
            assert answer.error is not None
            assert "loopback" in answer.error
    finally:
        await sender.aclose()
    assert receiver.received == []


async def test_allowed_when_private_is_allowed() -> None:
    target = await check_url("http://127.0.0.1:9/x?y=1", allow_private=True)
    assert (target.host, target.port, target.path) == ("127.0.0.1", 9, "/x?y=1")
    with pytest.raises(UnsafeUrlError):
        await check_url("http://127.0.0.1:9/x", allow_private=False)
    assert parse_url("https://[2001:db8::1]/h").host_header == "[2001:db8::1]"
    assert parse_url("https://shop.example:8443/h").host_header == "shop.example:8443"
