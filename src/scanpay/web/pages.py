"""Server-rendered pages: the demo shop (``/``) and the checkout page (``/checkout/{id}``).

The checkout page shows one of four faces, chosen here and kept current by its small script
(``static/checkout.js``, Server-Sent Events with a polling fallback):

- *pending*: the QR code of the current attempt, drawn here as inline SVG (segno), with the
  demo phone link. Only an attempt the shopper can still pay is drawn.
- *paid* (and refunded): the QR is gone; a large "Paid" panel and "Back to shop".
- *closed* / *expired*: the QR is gone; what happened, that no money was taken, "Back to shop".

``GET /checkout/{id}/qr`` returns the current QR as JSON (:class:`QrState`). It asks the
lifecycle for the checkout attempt, so an expired QR is closed at WeChat and replaced; the
script calls it when the QR's known expiry passes or the stream reports an attempt change
(``attempt_closed``, ``created``, ``qr_ready``, ``attempt_failed``), and swaps the SVG and the
phone link in place. "Back to shop" links to the order's ``return_url`` (the shop API's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from scanpay.domain.model import AttemptStatus, Order, OrderStatus, PaymentAttempt
from scanpay.web.api import check_order_id
from scanpay.web.context import AppContext, get_context
from scanpay.web.worker import get_lifecycle

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
NO_STORE: Final = {"Cache-Control": "no-store"}
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


@dataclass(frozen=True)
class QrState:
    """What the checkout page shows for an order right now. ``code_url`` is set only while
    the shopper can pay it (order pending, attempt active, window not over)."""

    status: OrderStatus
    out_trade_no: str
    code_url: str | None
    expires_in_ms: int | None
    phone_url: str | None

    @classmethod
    def of(cls, context: AppContext, order: Order, attempt: PaymentAttempt) -> QrState:
        now = context.service.now()
        payable = (
            order.status is OrderStatus.PENDING
            and attempt.status is AttemptStatus.ACTIVE
            and attempt.code_url is not None
            and not attempt.expired(now)
        )
        code_url = attempt.code_url if payable else None
        expires_in_ms = None
        if code_url is not None and attempt.expires_at is not None:
            expires_in_ms = int((attempt.expires_at - now).total_seconds() * 1000)
        phone = context.settings.simulator_phone_url
        phone_url = f"{phone}?code_url={quote(code_url, safe='')}" if phone and code_url else None
        return cls(order.status, attempt.out_trade_no, code_url, expires_in_ms, phone_url)

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "status_text": STATUS_TEXT[self.status],
            "out_trade_no": self.out_trade_no,
            "code_url": self.code_url,
            "qr_svg": str(qr_svg(self.code_url)) if self.code_url else None,
            "phone_url": self.phone_url,
            "expires_in_ms": self.expires_in_ms,
        }


def _page(request: Request, template: str, **values: object) -> HTMLResponse:
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(**values)
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP, **NO_STORE})


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
    """The demo shop's button: create the order server-side (its return URL is this shop's
    page) and go to its checkout page."""
    context = get_context(request)
    settings = context.settings
    placed = await context.service.place_order(
        settings.demo_product_amount,
        settings.demo_product_name,
        return_url=f"{settings.public_base_url}/",
    )
    return RedirectResponse(f"/checkout/{placed.order.id}", status_code=303)


async def _current(request: Request, order_id: str) -> tuple[Order, QrState]:
    context = get_context(request)
    order_id = check_order_id(order_id)
    # an expired QR is closed at WeChat and replaced; an open one gets an early query
    # (rate-limited): scanpay.domain.lifecycle
    attempt = await get_lifecycle(request).lifecycle.checkout_attempt(order_id)
    order = await context.store.get_order(order_id)
    return order, QrState.of(context, order, attempt)


@router.get("/checkout/{order_id}", response_class=HTMLResponse)
async def checkout(order_id: str, request: Request) -> HTMLResponse:
    order, state = await _current(request, order_id)
    return _page(
        request,
        "checkout.html",
        order=order,
        amount=yuan(order.amount),
        qr=qr_svg(state.code_url) if state.code_url else None,
        state=state,
        status=order.status.value,
        status_text=STATUS_TEXT[order.status],
        status_texts={s.value: t for s, t in STATUS_TEXT.items()},
        return_url=order.return_url,
        poll_ms=get_context(request).settings.checkout_poll_ms,
    )


@router.get("/checkout/{order_id}/qr")
async def checkout_qr(order_id: str, request: Request) -> JSONResponse:
    """The current QR (replacing an expired one first) for the checkout page's script."""
    _order, state = await _current(request, order_id)
    return JSONResponse(state.to_json(), headers=NO_STORE)
