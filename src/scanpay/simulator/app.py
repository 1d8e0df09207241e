"""The simulator's ASGI app: WeChat's paths at the root, the control API under ``/sim/``.

WeChat API v2: ``POST /pay/unifiedorder``, ``/pay/orderquery``, ``/pay/closeorder`` (XML in,
XML out, always HTTP 200 as WeChat does). WeChat API v3: ``POST /v3/pay/transactions/native``,
``GET /v3/pay/transactions/out-trade-no/{no}`` and ``/id/{id}``, ``POST .../{no}/close``,
``GET /v3/certificates`` (JSON, signed answers). Control API (JSON): ``POST /sim/pay``,
``GET /sim/notifications``, ``POST /sim/notifications/deliver``, ``GET /sim/clock``,
``POST /sim/clock/advance``, ``GET /sim/orders``, ``GET /sim/orders/{out_trade_no}``.
Pages: ``GET /sim`` (ledger overview), ``GET|POST /sim/scan`` (the payer's phone).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from scanpay.errors import DomainError, NotFoundError, ValidationError
from scanpay.simulator import pages
from scanpay.simulator.doctor import DEFAULT_DELAY_SECONDS as DEFAULT_DELAY
from scanpay.simulator.doctor import run_doctor
from scanpay.simulator.fault_http import FaultMiddleware, fault_routes
from scanpay.simulator.payer import PayOutcome
from scanpay.simulator.pubkeys import public_key_routes
from scanpay.simulator.refund_control import refund_routes
from scanpay.simulator.tls import secapi_refusal
from scanpay.simulator.v3api import V3Answer, V3Request
from scanpay.web import i18n
from scanpay.wechat.keys import load_certificate
from scanpay.wechat.v2.envelope import encode_failure
from scanpay.wechat.xmlcodec import MAX_BODY_BYTES

if TYPE_CHECKING:
    from scanpay.simulator.core import Simulator

XML_TYPE: Final = "text/xml; charset=utf-8"
MAX_JSON_BYTES: Final = 16 * 1024
MAX_V3_BODY: Final = 64 * 1024


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _xml(body: bytes) -> Response:
    return Response(body, media_type=XML_TYPE)


def _status(exc: DomainError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    return 400 if isinstance(exc, ValidationError) else 409


def _error_json(exc: DomainError) -> JSONResponse:
    body = {"ok": False, "error": exc.code, "message": exc.message}
    return JSONResponse(body, status_code=_status(exc))


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": "INVALID_REQUEST", "message": message}, 400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    raw = await read_body(request, MAX_JSON_BYTES)
    if raw is None:
        return None
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def build_app(sim: Simulator) -> Starlette:
    def v2_endpoint(handle: Callable[[bytes], bytes]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.method != "POST":
                return _xml(sim.v2.method_not_allowed())
            body = await read_body(request, MAX_BODY_BYTES)
            if body is None:
                return _xml(encode_failure(f"XML格式错误: body larger than {MAX_BODY_BYTES} bytes"))
            return _xml(handle(body))

        return endpoint

    merchant_certificate = load_certificate(sim.credentials.merchant_certificate_pem)

    def secapi(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """Mutual TLS as WeChat's front: with ``sim.require_client_certificate`` (HTTPS,
        scanpay.simulator.tls) only a caller presenting the merchant certificate gets in."""

        async def guarded(request: Request) -> Response:
            if sim.require_client_certificate:
                refusal = secapi_refusal(request.scope, merchant_certificate)
                if refusal is not None:
                    return Response(refusal, status_code=400, media_type="text/plain")
            return await endpoint(request)

        return guarded

    async def pay(request: Request) -> Response:
        data = await _json_object(request)
        if data is None:
            return _bad_request("body must be a JSON object")
        code_url, out_trade_no = data.get("code_url", ""), data.get("out_trade_no", "")
        outcome_text = data.get("outcome", PayOutcome.SUCCESS.value)
        if not all(isinstance(v, str) for v in (code_url, out_trade_no, outcome_text)):
            return _bad_request("code_url, out_trade_no and outcome must be strings")
        try:
            outcome = PayOutcome(outcome_text)
        except ValueError:
            choices = ", ".join(o.value for o in PayOutcome)
            return _bad_request(f"outcome must be one of: {choices}")
        try:
            result = await sim.pay(code_url=code_url, out_trade_no=out_trade_no, outcome=outcome)
        except DomainError as exc:
            return _error_json(exc)
        return JSONResponse({"ok": True, **result.to_json()})

    async def scan(request: Request) -> Response:
        locale = i18n.request_locale(request).locale
        if request.method == "POST":
            raw = await read_body(request, MAX_JSON_BYTES)
            form = parse_qs((raw or b"").decode("utf-8", "replace"))
            code_url = form.get("code_url", [""])[0]
            outcome_text = form.get("outcome", [""])[0]
            locale = i18n.negotiate(query=form.get("lang", [""])[0], default=locale)
        else:
            code_url, outcome_text = request.query_params.get("code_url", ""), ""
        _ = pages.texts(locale)
        if not code_url:
            html = pages.result_page(
                ok=False, headline=_("No QR code"), detail=_("code_url is missing"), locale=locale
            )
            return HTMLResponse(html, status_code=400)
        try:
            order = sim.payer.find(code_url=code_url)
            if request.method != "POST":
                response = HTMLResponse(pages.scan_page(order, sim.merchant_name, locale))
                i18n.remember(response, i18n.request_locale(request))
                return response
            outcome = PayOutcome(outcome_text) if outcome_text else PayOutcome.SUCCESS
            result = await sim.pay(code_url=code_url, outcome=outcome)
        except DomainError as exc:
            html = pages.refusal_page(exc.code, exc.message, locale)
            return HTMLResponse(html, status_code=_status(exc))
        except ValueError:
            html = pages.result_page(
                ok=False, headline=_("Unknown action"), detail=outcome_text, locale=locale
            )
            return HTMLResponse(html, status_code=400)
        html = pages.outcome_page(
            outcome.value, result.paid, pages.yuan(result.total_fee), sim.merchant_name, locale
        )
        return HTMLResponse(html)

    async def notifications(request: Request) -> Response:
        return JSONResponse(sim.notification_log())

    async def deliver(request: Request) -> Response:
        count = await sim.deliver_due_notifications()
        return JSONResponse({"ok": True, "attempts": count})

    def clock_json() -> dict[str, Any]:
        return {
            "now": sim.clock.now().isoformat(),
            "frozen": sim.clock.frozen,
            "offset_seconds": sim.clock.offset,
            "signature_clock": sim.signature_clock,
        }

    async def clock(request: Request) -> Response:
        return JSONResponse(clock_json())

    async def signature_clock(request: Request) -> Response:
        data = await _json_object(request)
        which = None if data is None else data.get("clock")
        if which not in ("real", "test"):
            return _bad_request('body must be {"clock": "real"} or {"clock": "test"}')
        sim.set_signature_clock(str(which))
        return JSONResponse(clock_json())

    async def advance(request: Request) -> Response:
        data = await _json_object(request)
        seconds = None if data is None else data.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _bad_request('body must be {"seconds": <non-negative number>}')
        sim.clock.advance(float(seconds))
        await sim.deliver_due_notifications()
        return JSONResponse(clock_json())

    async def doctor(request: Request) -> Response:
        data = await _json_object(request)
        if data is None:
            return _bad_request("body must be a JSON object")
        out_trade_no, api = data.get("out_trade_no"), data.get("api")
        status_url, delay = data.get("status_url"), data.get("delay_seconds", DEFAULT_DELAY)
        if not isinstance(out_trade_no, str) or not out_trade_no:
            return _bad_request("out_trade_no (a string) is required")
        if api not in (None, "v2", "v3"):
            return _bad_request('api must be "v2" or "v3"')
        if status_url is not None and not isinstance(status_url, str):
            return _bad_request("status_url must be a string")
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            return _bad_request("delay_seconds must be a number")
        try:
            report = await run_doctor(
                sim,
                out_trade_no,
                api=api,
                status_url=status_url or None,
                delay_seconds=float(delay),
                transport=sim.notify_transport,
            )
        except DomainError as exc:
            return _error_json(exc)
        return JSONResponse(report.to_json())

    async def orders(request: Request) -> Response:
        return JSONResponse([sim.order_json(o) for o in sim.ledger.orders()])

    async def order(request: Request) -> Response:
        found = sim.ledger.order(request.path_params["out_trade_no"])
        if found is None:
            return JSONResponse({"ok": False, "error": "ORDER_NOT_EXIST"}, status_code=404)
        return JSONResponse(sim.order_json(found))

    async def overview(request: Request) -> Response:
        html = pages.overview_page(
            sim.ledger.orders(), sim.ledger.notifications(), sim.clock.timestamp()
        )
        return HTMLResponse(html)

    async def v3_request(request: Request) -> V3Request | Response:
        body = await read_body(request, MAX_V3_BODY)
        if body is None:
            return Response(status_code=413)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = raw_path.decode("latin-1")
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode("latin-1")
        headers = {key.lower(): value for key, value in request.headers.items()}
        return V3Request(request.method, target, body, headers)

    def v3_response(answer: V3Answer) -> Response:
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    def v3_endpoint(
        handle: Callable[[V3Request, str], V3Answer], param: str = ""
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            parsed = await v3_request(request)
            if isinstance(parsed, Response):
                return parsed
            return v3_response(handle(parsed, request.path_params.get(param, "")))

        return endpoint

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    both = ["GET", "POST"]
    routes = [
        Route("/pay/unifiedorder", v2_endpoint(sim.v2.unified_order), methods=both),
        Route("/pay/orderquery", v2_endpoint(sim.v2.order_query), methods=both),
        Route("/pay/closeorder", v2_endpoint(sim.v2.close_order), methods=both),
        Route(
            "/v3/pay/transactions/native",
            v3_endpoint(lambda r, _: sim.v3.native_prepay(r)),
            methods=["POST"],
        ),
        Route(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}",
            v3_endpoint(sim.v3.query_by_out_trade_no, "out_trade_no"),
            methods=["GET"],
        ),
        Route(
            "/v3/pay/transactions/id/{transaction_id}",
            v3_endpoint(sim.v3.query_by_transaction_id, "transaction_id"),
            methods=["GET"],
        ),
        Route(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
            v3_endpoint(sim.v3.close, "out_trade_no"),
            methods=["POST"],
        ),
        Route(
            "/v3/certificates", v3_endpoint(lambda r, _: sim.v3.certificates(r)), methods=["GET"]
        ),
        # refunds and bills (scanpay.simulator.v2refunds / v3refunds / bills); secapi is
        # plain HTTP here: the simulator does not ask for the merchant's client certificate
        Route("/secapi/pay/refund", secapi(v2_endpoint(sim.v2_refunds.refund)), methods=both),
        Route("/pay/refundquery", v2_endpoint(sim.v2_refunds.refund_query), methods=both),
        Route(
            "/pay/downloadbill",
            v3_endpoint(lambda r, _: sim.bills.v2_download(r)),
            methods=["POST"],
        ),
        Route(
            "/v3/refund/domestic/refunds",
            v3_endpoint(lambda r, _: sim.v3_refunds.create(r)),
            methods=["POST"],
        ),
        Route(
            "/v3/refund/domestic/refunds/{out_refund_no}",
            v3_endpoint(sim.v3_refunds.query, "out_refund_no"),
            methods=["GET"],
        ),
        Route(
            "/v3/bill/tradebill",
            v3_endpoint(lambda r, _: sim.bills.v3_trade_bill(r)),
            methods=["GET"],
        ),
        Route(
            "/v3/bill/fundflowbill",
            v3_endpoint(lambda r, _: sim.bills.v3_fund_flow_bill(r)),
            methods=["GET"],
        ),
        Route(
            "/v3/billdownload/file",
            v3_endpoint(lambda r, _: sim.bills.v3_download(r)),
            methods=["GET"],
        ),
        Route("/sim", overview, methods=["GET"]),
        Route("/sim/", overview, methods=["GET"]),
        Route("/sim/pay", pay, methods=["POST"]),
        Route("/sim/scan", scan, methods=both),
        Route("/sim/notifications", notifications, methods=["GET"]),
        Route("/sim/notifications/deliver", deliver, methods=["POST"]),
        Route("/sim/clock", clock, methods=["GET"]),
        Route("/sim/clock/advance", advance, methods=["POST"]),
        Route("/sim/clock/signatures", signature_clock, methods=["POST"]),
        Route("/sim/orders", orders, methods=["GET"]),
        Route("/sim/doctor", doctor, methods=["POST"]),
        Route("/sim/orders/{out_trade_no}", order, methods=["GET"]),
    ]
    routes.extend(fault_routes(sim))
    routes.extend(refund_routes(sim))  # refund outcomes (issue 15)
    routes.extend(public_key_routes(sim.v3.public_keys))  # public key rotation (issue 15)
    return Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(FaultMiddleware, sim=sim)]
    )
