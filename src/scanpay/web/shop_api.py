"""The shop API beyond create/read: list orders, close an order, refund and list refunds.

All routes need ``Authorization: Bearer <shop_api_key>``. Every invalid request gets a 4xx
with a machine-readable ``error.code`` (see :mod:`scanpay.web.errors`). Refunds need an
``Idempotency-Key``: the same key with the same body returns the same refund (200), another
body under it is 409 ``IDEMPOTENCY_KEY_REUSED``.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from scanpay.domain.closing import close_order
from scanpay.domain.model import OrderStatus
from scanpay.errors import ValidationError
from scanpay.web.api import ERRORS, IDEMPOTENCY_KEY, check_order_id, order_view
from scanpay.web.context import get_context, require_shop_key
from scanpay.web.cursors import make_cursor, read_cursor
from scanpay.web.schemas import CreateRefund, OrderPage, OrderView, RefundList, RefundView
from scanpay.web.wiring import get_extras

MAX_PAGE: Final = 100
BAD_CURSOR: Final = "cursor is not one this API gave out"

router = APIRouter(
    prefix="/api", tags=["shop"], responses=ERRORS, dependencies=[Depends(require_shop_key)]
)


@router.get("/orders", summary="List orders, newest first (paginated; filter by status)")
async def list_orders(
    request: Request,
    status: Annotated[OrderStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    context = get_context(request)
    refusal = ValidationError(BAD_CURSOR, code="INVALID_CURSOR")
    before = read_cursor(cursor, refusal) if cursor else None
    found = await context.store.list_orders(status, limit + 1, before)
    items = [await order_view(context, order.id) for order in found[:limit]]
    last = found[limit - 1] if len(found) > limit else None
    after = make_cursor(last.created_at, last.id) if last else None
    return OrderPage(items=items, next_cursor=after)


@router.post(
    "/orders/{order_id}/close",
    summary="Close an unpaid order (closed at WeChat first; if it was paid, it becomes paid)",
)
async def close(order_id: str, request: Request) -> OrderView:
    context = get_context(request)
    await close_order(context.service, check_order_id(order_id))
    context.hub.notify(order_id)
    return await order_view(context, order_id)


@router.post(
    "/orders/{order_id}/refunds",
    status_code=201,
    summary="Refund all or part of a paid order (Idempotency-Key required)",
    responses={200: {"model": RefundView, "description": "Idempotent replay: the stored refund"}},
)
async def create_refund(
    order_id: str,
    body: CreateRefund,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> RefundView:
    """Stores the refund, then asks WeChat Pay; the answer is usually ``processing`` (the
    refund becomes ``success`` when WeChat confirms it). Retry a 502/503 with the same key."""
    if idempotency_key is None or not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise ValidationError(
            "an Idempotency-Key header of 1-255 printable ASCII characters is required",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    placed = await get_extras(request).refunds.refund(
        check_order_id(order_id), body.amount, idempotency_key=idempotency_key, reason=body.reason
    )
    if not placed.created:
        response.status_code = 200
    response.headers["Location"] = f"/api/orders/{order_id}/refunds"
    return RefundView.of(placed.refund)


@router.get("/orders/{order_id}/refunds", summary="The order's refunds, newest first")
async def list_refunds(order_id: str, request: Request) -> RefundList:
    refunds = await get_extras(request).refunds.refunds(check_order_id(order_id))
    return RefundList(items=[RefundView.of(refund) for refund in refunds])
