"""Control API for refund outcomes: the tester chooses how refunds end.

``GET /sim/refunds`` lists every refund. ``POST /sim/refunds/outcome`` ``{"outcome":
"success" | "closed" | "abnormal"}`` chooses what refunds that come due become (kept across
restarts); ``POST /sim/refunds/{out_refund_no}/settle`` with the same body ends one refund now
(PROCESSING → any outcome; ABNORMAL → success or closed, as after a person resolved it) and
delivers its notification: v2 ``refund_status`` ``SUCCESS`` / ``REFUNDCLOSE`` / ``CHANGE``,
v3 ``REFUND.SUCCESS`` / ``REFUND.CLOSED`` / ``REFUND.ABNORMAL``. WeChat's own names
(``REFUNDCLOSE``, ``CHANGE``, upper case) are accepted as well.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scanpay.errors import ConfigurationError, ValidationError
from scanpay.simulator.refunds import SimRefund
from scanpay.simulator.saved import REFUND_OUTCOME
from scanpay.wechat.states import RefundState

if TYPE_CHECKING:
    from scanpay.simulator.core import Simulator

NAMES: Final = {
    "success": RefundState.SUCCESS,
    "closed": RefundState.CLOSED,
    "refundclose": RefundState.CLOSED,
    "abnormal": RefundState.ABNORMAL,
    "change": RefundState.ABNORMAL,
}
MAX_BODY: Final = 4096


def parse_outcome(value: object) -> RefundState:
    if not isinstance(value, str) or value.strip().lower() not in NAMES:
        raise ValidationError('outcome must be "success", "closed" or "abnormal"')
    return NAMES[value.strip().lower()]


def refund_json(refund: SimRefund) -> dict[str, Any]:
    return {
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "out_trade_no": refund.out_trade_no,
        "api": refund.api,
        "refund_fee": refund.refund_fee,
        "total_fee": refund.total_fee,
        "status": refund.status.value,
        "v2_refund_status": refund.v2_status.value,
        "notify_url": refund.notify_url,
    }


def restore_outcome(sim: Simulator) -> None:
    saved = sim.saved.load(REFUND_OUTCOME)
    if saved is not None:
        try:
            sim.refunds.outcome = parse_outcome(saved)
        except ValidationError:
            raise ConfigurationError("saved refund outcome is unreadable") from None


def choose_outcome(sim: Simulator, name: str) -> RefundState:
    """What refunds that come due become from now on (kept across restarts)."""
    outcome = parse_outcome(name)
    sim.refunds.outcome = outcome
    sim.saved.save(REFUND_OUTCOME, outcome.value)
    return outcome


def refund_routes(sim: Simulator) -> list[Route]:
    async def outcome_of(request: Request) -> RefundState:
        raw = await request.body()
        try:
            data = json.loads(raw[:MAX_BODY] or b"{}")
        except ValueError:
            raise ValidationError("body must be a JSON object") from None
        if not isinstance(data, dict):
            raise ValidationError("body must be a JSON object")
        return parse_outcome(data.get("outcome"))

    def listing() -> dict[str, Any]:
        return {
            "outcome": sim.refunds.outcome.value.lower(),
            "refunds": [refund_json(r) for r in sim.refunds.all()],
        }

    def bad(message: str, status: int = 400, error: str = "INVALID_REQUEST") -> Response:
        return JSONResponse({"ok": False, "error": error, "message": message}, status_code=status)

    async def refunds(request: Request) -> Response:
        return JSONResponse(listing())

    async def choose(request: Request) -> Response:
        try:
            outcome = await outcome_of(request)
        except ValidationError as exc:
            return bad(exc.message)
        choose_outcome(sim, outcome.value)
        return JSONResponse(listing())

    async def settle(request: Request) -> Response:
        number = request.path_params["out_refund_no"]
        try:
            outcome = await outcome_of(request)
        except ValidationError as exc:
            return bad(exc.message)
        refund = sim.refunds.get(number)
        if refund is None:
            return bad("no refund has this out_refund_no", 404, "REFUND_NOT_EXIST")
        if not sim.refunds.finish(number, outcome):
            return bad(
                f"the refund is {refund.status.value}; it cannot become {outcome.value}",
                409,
                "REFUND_NOT_SETTLEABLE",
            )
        await sim.deliver_due_notifications()
        done = sim.refunds.get(number)
        assert done is not None
        return JSONResponse({"ok": True, "refund": refund_json(done)})

    return [
        Route("/sim/refunds", refunds, methods=["GET"]),
        Route("/sim/refunds/outcome", choose, methods=["POST"]),
        Route("/sim/refunds/{out_refund_no}/settle", settle, methods=["POST"]),
    ]
