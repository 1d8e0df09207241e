"""Server-rendered pages: the demo shop (``/``) and the checkout page (``/checkout/{id}``).

The QR code is drawn here as inline SVG (segno) from the attempt's ``code_url``; the page's
script follows the status stream and falls back to polling the order every 2 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from urllib.parse import quote

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from scanpay.domain.model import OrderStatus
from scanpay.web.api import check_order_id
from scanpay.web.context import get_context
from scanpay.web.worker import get_lifecycle

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATUS_TEXT: Final = {
    OrderStatus.PENDING: "Waiting for payment",
    OrderStatus.PAID: "Paid",
    OrderStatus.CLOSED: "Closed",
    OrderStatus.EXPIRED: "Expired",
    OrderStatus.PARTIALLY_REFUNDED: "Paid (partly refunded)",
    OrderStatus.REFUNDED: "Refunded",
}

router = APIRouter(include_in_schema=False)


def make_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True)
    )


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def qr_svg(code_url: str) -> Markup:
    qr = segno.make(code_url, error="m", micro=False)
    svg: str = qr.svg_inline(scale=6, border=4, dark="#000000", light="#ffffff")
    return Markup(svg)


def _page(request: Request, template: str, **values: object) -> HTMLResponse:
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(**values)
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


@router.get("/", response_class=HTMLResponse)
async def shop(request: Request) -> HTMLResponse:
    settings = get_context(request).settings
    return _page(
        request,
        "shop.html",
        product=settings.demo_product_name,
        price=yuan(settings.demo_product_amount),
    )


@router.post("/shop/buy")
async def buy(request: Request) -> RedirectResponse:
    """The demo shop's button: create the order server-side and go to its checkout page."""
    context = get_context(request)
    settings = context.settings
    placed = await context.service.place_order(
        settings.demo_product_amount, settings.demo_product_name
    )
    return RedirectResponse(f"/checkout/{placed.order.id}", status_code=303)


@router.get("/checkout/{order_id}", response_class=HTMLResponse)
async def checkout(order_id: str, request: Request) -> HTMLResponse:
    context = get_context(request)
    order_id = check_order_id(order_id)
    # an expired QR is closed at WeChat and replaced; an open one gets an early query
    # (rate-limited): scanpay.domain.lifecycle
    attempt = await get_lifecycle(request).lifecycle.checkout_attempt(order_id)
    order = await context.store.get_order(order_id)
    phone_url = None
    if context.settings.simulator_phone_url and attempt.code_url:
        phone_url = (
            f"{context.settings.simulator_phone_url}?code_url={quote(attempt.code_url, safe='')}"
        )
    return _page(
        request,
        "checkout.html",
        order=order,
        amount=yuan(order.amount),
        qr=qr_svg(attempt.code_url) if attempt.code_url else None,
        status=order.status.value,
        status_text=STATUS_TEXT[order.status],
        status_texts={s.value: t for s, t in STATUS_TEXT.items()},
        phone_url=phone_url,
        poll_ms=context.settings.checkout_poll_ms,
    )
