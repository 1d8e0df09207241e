"""Faults over HTTP: the middleware that injects them and the control API that switches them.

:class:`FaultMiddleware` wraps the simulator app. For each call to a WeChat path (anything
outside ``/sim``) it draws the active API faults plus those named in an ``X-Sim-Fault``
header, then: rotates the platform certificate (``rotate_certificate``), waits (``slow``),
answers in WeChat's error forms instead of the endpoint (``http_5xx``: bare 503;
``system_error``: v2 ``result_code=FAIL``/``SYSTEMERROR``, v3 500 ``SYSTEM_ERROR``;
``frequency_limited``: v2 ``return_code=FAIL``, v3 429 ``FREQUENCY_LIMITED``), or runs the
endpoint with the signature faults in effect. ``lost_answer`` runs the endpoint (the call is
carried out) and throws its answer away: the caller gets a bare 504, as from a gateway whose
upstream answered too late. Notification faults in the header of a prepay
call (v2 ``/pay/unifiedorder``, v3 ``/v3/pay/transactions/native``) or of ``POST /sim/pay``
are attached to that order. A header that does not parse is a 400 (``INVALID_FAULT``).

Control API: ``GET|POST|DELETE /sim/faults``, ``GET /sim/certificates``,
``POST /sim/certificates/rotate`` (``{"keep_old": true}``), ``POST /sim/certificates/retire``,
``POST /sim/notifications/{id}/resend`` (JSON, or a form from the ``/sim`` page: 303 back).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scanpay.errors import MalformedMessageError, ValidationError
from scanpay.simulator import ids
from scanpay.simulator.faults import (
    MAX_SLOW,
    Fault,
    FaultSpec,
    applying,
    parse_header,
    scenario,
    spec_from_json,
)
from scanpay.simulator.faults import Scope as FaultScope
from scanpay.simulator.v3api import PLATFORM, PUBLIC_KEY
from scanpay.wechat.keys import is_public_key_id
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import encode_failure, encode_response
from scanpay.wechat.v3.apierror import error_body
from scanpay.wechat.v3.verify import REQUEST_ID
from scanpay.wechat.xmlcodec import parse_xml

if TYPE_CHECKING:
    from scanpay.simulator.core import Simulator

HEADER: Final = b"x-sim-fault"
PREPAY_PATHS: Final = frozenset({"/pay/unifiedorder", "/v3/pay/transactions/native", "/sim/pay"})
MAX_BUFFERED: Final = 256 * 1024
ANSWERING: Final = (Fault.HTTP_5XX, Fault.SYSTEM_ERROR, Fault.FREQUENCY_LIMITED)
LOST_HTML: Final = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"


async def _read_all(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BUFFERED:
            break
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _out_trade_no(sim: Simulator, path: str, body: bytes) -> str:
    """The order a prepay call or ``POST /sim/pay`` is about ('' when it cannot be told)."""
    try:
        if path == "/pay/unifiedorder":
            return parse_xml(body).get("out_trade_no", "")
        data = json.loads(body or b"{}")
    except (MalformedMessageError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    number = data.get("out_trade_no", "")
    code_url = data.get("code_url", "")
    if not number and isinstance(code_url, str) and code_url:
        found = sim.ledger.order_by_code_url(code_url)
        number = found.out_trade_no if found else ""
    return number if isinstance(number, str) else ""


class FaultMiddleware:
    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        header = next((v for k, v in scope["headers"] if k == HEADER), b"").decode("latin-1")
        is_control = path.startswith("/sim")
        if is_control and not (header and path == "/sim/pay"):
            await self.app(scope, receive, send)
            return
        try:
            extra = parse_header(header) if header else []
        except ValidationError as exc:
            answer = JSONResponse(
                {"ok": False, "error": "INVALID_FAULT", "message": exc.message}, 400
            )
            await answer(scope, receive, send)
            return
        for_order = [s for s in extra if s.applies_to(FaultScope.NOTIFICATIONS)]
        body: bytes | None = None
        if for_order and path in PREPAY_PATHS:
            body = await _read_all(receive)
            number = _out_trade_no(self.sim, path, body)
            if number:
                self.sim.faults.for_order(number, for_order)
        if is_control:
            await self.app(scope, receive if body is None else _replay(body, receive), send)
            return
        faults = self.sim.faults
        fired = faults.fire(
            FaultScope.API, path=path, extra=[s for s in extra if s.applies_to(FaultScope.API)]
        )
        if Fault.ROTATE_CERTIFICATE in fired:
            serial = self.sim.v3.keyring.rotate()
            faults.note(Fault.ROTATE_CERTIFICATE, serial=serial, path=path)
        slow = fired.get(Fault.SLOW)
        if slow is not None:
            faults.note(Fault.SLOW, seconds=min(slow.value, MAX_SLOW), path=path)
            if body is None:  # read now: the call is carried out even if the caller gives up
                body = await _read_all(receive)
            await asyncio.sleep(min(slow.value, MAX_SLOW))
        answering = next((f for f in ANSWERING if f in fired), None)
        if answering is not None:
            if body is None:
                body = await _read_all(receive)
            faults.note(answering, path=path)
            with applying(fired):
                response = self._error_answer(answering, scope, path, body)
            await response(scope, receive, send)
            return
        if Fault.LOST_ANSWER in fired:
            faults.note(Fault.LOST_ANSWER, path=path)
            await self._lose_answer(
                fired, scope, receive if body is None else _replay(body, receive)
            )
            await Response(LOST_HTML, status_code=504, media_type="text/html")(scope, receive, send)
            return
        with applying(fired):
            await self.app(scope, receive if body is None else _replay(body, receive), send)

    async def _lose_answer(
        self, fired: dict[Fault, FaultSpec], scope: Scope, receive: Receive
    ) -> None:
        """Carry the call out; its answer goes nowhere."""

        async def discard(message: Message) -> None:
            return None

        with applying(fired):
            await self.app(scope, receive, discard)

    def _error_answer(self, fault: Fault, scope: Scope, path: str, body: bytes) -> Response:
        if fault is Fault.HTTP_5XX:  # a gateway in front of WeChat: no signature, HTML
            html = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
            return Response(html, status_code=503, media_type="text/html")
        if path.startswith("/v3/"):
            return self._v3_error(fault, scope)
        if fault is Fault.FREQUENCY_LIMITED:
            return Response(
                encode_failure("FREQUENCY_LIMITED: 当前使用此业务的用户过多，请稍后再试"),
                media_type="text/xml",
            )
        creds = self.sim.credentials
        try:
            fields = parse_xml(body)
            sign_type = SignType(fields.get("sign_type", SignType.MD5.value))
        except (MalformedMessageError, ValueError):
            return Response(encode_failure("SYSTEMERROR: 系统繁忙"), media_type="text/xml")
        answer = encode_response(
            {
                "appid": creds.appid,
                "mch_id": creds.mchid,
                "result_code": "FAIL",
                "err_code": "SYSTEMERROR",
                "err_code_des": "系统超时，请用相同参数再次调用",
            },
            creds.api_v2_key,
            sign_type,
            nonce=ids.nonce(),
        )
        return Response(answer, media_type="text/xml")

    def _v3_error(self, fault: Fault, scope: Scope) -> Response:
        serial = next((v for k, v in scope["headers"] if k == b"wechatpay-serial"), b"")
        signer = PUBLIC_KEY if is_public_key_id(serial.decode("latin-1")) else PLATFORM
        if fault is Fault.SYSTEM_ERROR:
            status, body = 500, error_body("SYSTEM_ERROR", "系统错误")
        else:
            status, body = 429, error_body("FREQUENCY_LIMITED", "请求频率超限")
        headers = self.sim.v3.signed_headers(body, signer)
        headers[REQUEST_ID] = secrets.token_hex(16)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(body, status_code=status, headers=headers)


# --- control API ---------------------------------------------------------------------------


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": "INVALID_FAULT", "message": message}, 400)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return None


def parse_settings(data: Any) -> tuple[list[FaultSpec], int | None, bool, bool]:
    """``{"faults": {...}, "scenario": "...", "seed": n, "replace": bool}`` -> specs, seed,
    whether a seed was given, replace."""
    if not isinstance(data, dict) or set(data) - {"faults", "scenario", "seed", "replace"}:
        raise ValidationError('body: {"faults": {name: value}, "scenario", "seed", "replace"}')
    specs: list[FaultSpec] = []
    if "scenario" in data:
        if not isinstance(data["scenario"], str):
            raise ValidationError("scenario must be a name")
        specs.extend(scenario(data["scenario"]))
    table = data.get("faults", {})
    if not isinstance(table, dict):
        raise ValidationError("faults must be an object of name: value")
    specs.extend(spec_from_json(str(name), value) for name, value in table.items())
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValidationError("seed must be an integer")
    replace_all = data.get("replace", True)
    if not isinstance(replace_all, bool):
        raise ValidationError("replace must be true or false")
    return specs, seed, "seed" in data, replace_all


def fault_routes(sim: Simulator) -> list[Route]:
    def state() -> dict[str, Any]:
        keyring = sim.v3.keyring
        return {
            "ok": True,
            **sim.faults.snapshot(),
            "certificates": keyring.serials(),
            "signing_serial": keyring.current().serial,
        }

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sim.faults.clear()
        elif request.method == "POST":
            try:
                specs, seed, has_seed, replace_all = parse_settings(await _json(request))
            except ValidationError as exc:
                return _bad(exc.message)
            if has_seed:
                sim.faults.seed(seed)
            sim.faults.set(specs, now=sim.clock.timestamp(), replace_all=replace_all)
        return JSONResponse(state())

    async def certificates(request: Request) -> Response:
        return JSONResponse(state())

    async def rotate(request: Request) -> Response:
        data = await _json(request)
        keep_old = data.get("keep_old", True) if isinstance(data, dict) else None
        if not isinstance(keep_old, bool):
            return _bad('body: {"keep_old": true|false}')
        serial = sim.v3.keyring.rotate(keep_old=keep_old)
        sim.faults.note(Fault.ROTATE_CERTIFICATE, serial=serial)
        return JSONResponse({**state(), "serial": serial})

    async def retire(request: Request) -> Response:
        dropped = sim.v3.keyring.retire_old()
        return JSONResponse({**state(), "retired": dropped})

    async def resend(request: Request) -> Response:
        try:
            number = int(request.path_params["notification_id"])
        except ValueError:
            number = -1
        if not sim.resend_notification(number):
            return JSONResponse({"ok": False, "error": "NOT_FOUND"}, status_code=404)
        await sim.deliver_due_notifications()
        if request.headers.get("content-type", "").startswith("application/x-www-form"):
            return RedirectResponse("/sim", status_code=303)
        entry = next(n for n in sim.notification_log() if n["id"] == number)
        return JSONResponse({"ok": True, "notification": entry})

    return [
        Route("/sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/sim/certificates", certificates, methods=["GET"]),
        Route("/sim/certificates/rotate", rotate, methods=["POST"]),
        Route("/sim/certificates/retire", retire, methods=["POST"]),
        Route("/sim/notifications/{notification_id}/resend", resend, methods=["POST"]),
    ]
