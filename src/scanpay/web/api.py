"""The shop API: create and read orders (JSON)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request, Response

from scanpay.domain.model import check_description
from scanpay.domain.ports import IdempotencyClaim
from scanpay.errors import NotFoundError, ValidationError
from scanpay.web.context import AppContext, get_context, require_shop_key
from scanpay.web.schemas import CreateOrder, ErrorBody, OrderView, check_return_url

ORDER_ID: Final = re.compile(r"ord_[A-Za-z0-9_-]{22}")
IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 413, 422, 502, 503)
}

router = APIRouter(prefix="/api", tags=["orders"], responses=ERRORS)


def check_order_id(order_id: str) -> str:
    if not ORDER_ID.fullmatch(order_id):
        raise NotFoundError("no such order")
    return order_id


async def order_view(context: AppContext, order_id: str) -> OrderView:
    order = await context.store.get_order(check_order_id(order_id))
    attempt = await context.store.current_attempt(order.id)
    refunded = await context.store.refunded_amount(order.id)
    return OrderView.of(order, attempt, context.settings.public_base_url, refunded)


@router.post(
    "/orders",
    status_code=201,
    dependencies=[Depends(require_shop_key)],
    summary="Create an order and its WeChat Pay QR code",
    responses={200: {"model": OrderView, "description": "Idempotent replay: the stored order"}},
)
async def create_order(
    body: CreateOrder,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> OrderView:
    """Stores the order, opens it at WeChat Pay and returns it with ``code_url`` and
    ``checkout_url``. The same ``Idempotency-Key`` with the same body returns the same order
    (200); with another body, 409."""
    context = get_context(request)
    check_description(body.description)
    if body.return_url is not None:
        check_return_url(body.return_url)
    claim = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValidationError(
                "Idempotency-Key must be 1-255 printable ASCII characters",
                code="INVALID_IDEMPOTENCY_KEY",
            )
        claim = IdempotencyClaim(idempotency_key, body.fingerprint())
    placed = await context.service.place_order(
        body.amount, body.description, claim, return_url=body.return_url
    )
    if not placed.created:
        response.status_code = 200
    response.headers["Location"] = f"/api/orders/{placed.order.id}"
    return OrderView.of(placed.order, placed.attempt, context.settings.public_base_url)


@router.get("/orders/{order_id}", summary="Read an order (public: the id is the capability)")
async def get_order(order_id: str, request: Request) -> OrderView:
    return await order_view(get_context(request), order_id)
