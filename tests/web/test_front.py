"""The short path for notification POSTs: same answers as the ordinary way (error handlers,
body cap, 500 guard), other methods and paths untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.errors import NotFoundError
from scanpay.web import errors
from scanpay.web.front import ScanpayApp


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body[::-1], media_type="text/plain", headers={"X-App": str(id(request.app))})


async def missing(request: Request) -> Response:
    raise NotFoundError("no such thing")


async def broken(request: Request) -> Response:
    raise RuntimeError("bug")


def make_app() -> ScanpayApp:
    app = ScanpayApp()
    errors.install(app)
    app.router.routes.extend(
        [Route("/n/echo", echo, methods=["POST"]), Route("/n/missing", missing, methods=["POST"])]
    )
    app.add_short_path("/n/echo", echo, body_limit=16)
    app.add_short_path("/n/missing", missing, body_limit=16)
    app.add_short_path("/n/broken", broken, body_limit=16)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def test_short_path_serves_posts(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    answer = await client.post("/n/echo", content=b"abc")
    assert (answer.status_code, answer.content) == (200, b"cba")
    assert answer.headers["X-App"] == str(id(app))  # request.app is the application
    assert set(app.short_paths) == {"/n/echo", "/n/missing", "/n/broken"}


async def test_errors_get_the_applications_answers(client: httpx.AsyncClient) -> None:
    missing_answer = await client.post("/n/missing", content=b"x")
    assert missing_answer.status_code == 404
    assert missing_answer.json()["error"]["code"] == "NOT_FOUND"
    too_big = await client.post("/n/echo", content=b"x" * 17)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "BODY_TOO_LARGE"
    crash = await client.post("/n/broken", content=b"x")
    assert crash.status_code == 500
    assert b"bug" not in crash.content


async def test_other_methods_and_paths_take_the_ordinary_way(client: httpx.AsyncClient) -> None:
    wrong_method = await client.get("/n/echo")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    unknown = await client.post("/n/other", content=b"x")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"
