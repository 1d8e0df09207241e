"""Server-rendered pages: the demo shop (``/``) and the checkout page (``/checkout/{id}``).

Every page is rendered in the shopper's language (:mod:`scanpay.web.i18n`, catalogue domain
``cashier``; zh-CN first) and shows the merchant (``SCANPAY_MERCHANT_NAME``, optional logo).
The checkout page shows one of four faces, chosen here and kept current by its script
(``static/checkout.js``: a status stream that reconnects with ``Last-Event-ID``, re-checks
when the network or the tab comes back, and says so while the service cannot be reached):

- *pending*: merchant, item, amount, the order number the payer's WeChat shows (the current
  attempt's ``out_trade_no``), the QR code of the current attempt (inline SVG drawn by segno,
  with an accessible name), a countdown to its expiry (from the server's remaining time), the
  instruction to scan with WeChat, a phone-size notice with "copy the link", and a way back.
- *paid* (and refunded): a receipt (merchant, amount, the paid attempt's order number, WeChat's
  transaction id, time paid) and an automatic return to ``return_url`` after
  ``SCANPAY_CHECKOUT_RETURN_SECONDS`` with a "return now" button.
- *closed* / *expired*: what happened, that no money was taken, and a way to start again.

``GET /checkout/{id}/qr`` returns the current state as JSON (:class:`QrState`), replacing an
expired QR first (the lifecycle closes it at WeChat); the script calls it when the QR's known
expiry passes, when the stream reports an attempt change, and once paid (for the receipt).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import segno
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.responses import Response

from scanpay.domain.model import AttemptStatus, Order, OrderStatus, PaymentAttempt
from scanpay.web import i18n
from scanpay.web.api import check_order_id
from scanpay.web.assets import Assets, html_response
from scanpay.web.context import AppContext, get_context
from scanpay.web.worker import get_lifecycle

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
STATIC: Final = Path(__file__).resolve().parent / "static"
DOMAIN: Final = "cashier"
NO_STORE: Final = {"Cache-Control": "no-store"}
BEIJING: Final = timezone(timedelta(hours=8))
PAID_STATES: Final = frozenset(
    {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}
)


def N_(text: str) -> str:
    return text


# msgids of the status texts (translated where shown)
STATUS_TEXT: Final = {
    OrderStatus.PENDING: N_("Waiting for payment"),
    OrderStatus.PAID: N_("Paid"),
    OrderStatus.CLOSED: N_("Closed"),
    OrderStatus.EXPIRED: N_("Expired"),
    OrderStatus.PARTIALLY_REFUNDED: N_("Paid (partly refunded)"),
    OrderStatus.REFUNDED: N_("Refunded"),
}

router = APIRouter(include_in_schema=False)


def csp(logo_url: str | None = None) -> str:
    images = "'self' data:"
    if logo_url and logo_url.startswith(("http://", "https://")):
        parts = urlsplit(logo_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


CSP: Final = csp()


class Templates:
    """The cashier's Jinja environments (one per locale) and its static files."""

    def __init__(self) -> None:
        self.assets = Assets(STATIC)
        self.environments = i18n.make_environments(FileSystemLoader(TEMPLATES), domain=DOMAIN)
        for env in self.environments.values():
            env.globals["static"] = self.assets.url

    def env(self, locale: str) -> Environment:
        return self.environments[locale]


def make_environment() -> Templates:
    return Templates()


def templates_of(request: Request) -> Templates:
    templates: Templates = request.app.state.templates
    return templates


def translate(locale: str, text: str) -> str:
    return i18n.translations(DOMAIN, locale).gettext(text)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def qr_svg(code_url: str, label: str = "") -> Markup:
    qr = segno.make(code_url, error="m", micro=False)
    svg: str = qr.svg_inline(scale=6, border=4, dark="#000000", light="#ffffff")
    if label:  # the accessible name of the picture (WCAG 1.1.1)
        attrs = f'<svg role="img" aria-label="{Markup.escape(label)}"'
        svg = attrs + svg[len("<svg") :]
    return Markup(svg)


def qr_label(locale: str, out_trade_no: str) -> str:
    return translate(locale, N_("WeChat Pay QR code for order %(number)s")) % {
        "number": out_trade_no
    }


def mmss(ms: int | None) -> str:
    seconds = max(0, (ms or 0) // 1000)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def beijing_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Receipt:
    """What the paid face shows: the paid attempt's numbers and when it was paid."""

    merchant: str
    amount: str
    out_trade_no: str
    transaction_id: str
    paid_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "merchant": self.merchant,
            "amount": self.amount,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "paid_at": self.paid_at,
        }


async def receipt_of(context: AppContext, order: Order, locale: str) -> Receipt | None:
    if order.status not in PAID_STATES:
        return None
    number = await context.store.paid_out_trade_no(order.id)
    attempt = await context.store.find_attempt(number) if number else None
    if attempt is None or attempt.status is not AttemptStatus.PAID:
        attempt = await context.store.current_attempt(order.id)
    return Receipt(
        merchant=context.settings.merchant_name,
        amount=i18n.money(order.amount, locale),
        out_trade_no=attempt.out_trade_no,
        transaction_id=attempt.transaction_id or "",
        paid_at=translate(locale, N_("%(time)s (Beijing time)"))
        % {"time": beijing_time(attempt.updated_at)},
    )


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

    def to_json(self, locale: str = i18n.SOURCE_LOCALE) -> dict[str, object]:
        label = qr_label(locale, self.out_trade_no)
        return {
            "status": self.status.value,
            "status_text": translate(locale, STATUS_TEXT[self.status]),
            "out_trade_no": self.out_trade_no,
            "code_url": self.code_url,
            "qr_svg": str(qr_svg(self.code_url, label)) if self.code_url else None,
            "phone_url": self.phone_url,
            "expires_in_ms": self.expires_in_ms,
        }


def page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    locale: str | None = None,
    **values: Any,
) -> Response:
    """Render ``template`` in the request's language, with the page's common values."""
    settings = get_context(request).settings
    choice = (
        i18n.Choice(locale) if locale else i18n.request_locale(request, settings.default_locale)
    )
    env = templates_of(request).env(choice.locale)
    here = request.url.path if request.method == "GET" else "/"
    html = env.get_template(template).render(
        merchant_name=settings.merchant_name,
        merchant_logo_url=settings.merchant_logo_url,
        lang_urls={loc: f"{here}?lang={loc}" for loc in i18n.LOCALES},
        **values,
    )
    headers = {"Content-Security-Policy": csp(settings.merchant_logo_url), **NO_STORE}
    response = html_response(request, html, status_code, headers)
    i18n.remember(response, choice)
    return response


@router.get("/")
async def shop(request: Request) -> Response:
    settings = get_context(request).settings
    product, amount = settings.demo_product_name, settings.demo_product_amount
    return page(request, "shop.html", product=product, amount=amount)


@router.post("/shop/buy")
async def buy(request: Request) -> RedirectResponse:
    """The demo shop's button: create the order server-side (its return URL is this shop's
    page) and go to its checkout page. A refusal by WeChat becomes the 502 page
    (:mod:`scanpay.web.error_pages`) with a button that tries again."""
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


def _texts(locale: str) -> dict[str, str]:
    """The script's texts in the page's language."""
    keys = {
        "stale": N_("This QR code has expired. Getting a new one…"),
        "waiting": N_("Getting a new QR code…"),
        "replaced": N_("The QR code was replaced by a new one. Scan the new code."),
        "failed": N_("Could not get a new QR code. Use the button to try again."),
        "lost": N_("Connection lost. Retrying…"),
        "copied": N_("Link copied"),
        "copy_failed": N_("Copy the link below"),
        "expired_qr": N_("QR code expired"),
    }
    texts = {key: translate(locale, text) for key, text in keys.items()}
    texts.update({s.value: translate(locale, t) for s, t in STATUS_TEXT.items()})
    return texts


@router.get("/checkout/{order_id}")
async def checkout(order_id: str, request: Request) -> Response:
    context = get_context(request)
    settings = context.settings
    choice = i18n.request_locale(request, settings.default_locale)
    order, state = await _current(request, order_id)
    receipt = await receipt_of(context, order, choice.locale)
    label = qr_label(choice.locale, state.out_trade_no)
    response = page(
        request,
        "checkout.html",
        locale=choice.locale,
        order=order,
        qr=qr_svg(state.code_url, label) if state.code_url else None,
        state=state,
        status=order.status.value,
        status_text=translate(choice.locale, STATUS_TEXT[order.status]),
        texts=_texts(choice.locale),
        receipt=receipt,
        countdown=mmss(state.expires_in_ms),
        paid=order.status in PAID_STATES,
        return_url=order.return_url,
        return_seconds=settings.checkout_return_seconds,
        checkout_url=context.checkout_url(order.id),
        poll_ms=settings.checkout_poll_ms,
    )
    i18n.remember(response, choice)
    return response


@router.get("/checkout/{order_id}/qr")
async def checkout_qr(order_id: str, request: Request) -> JSONResponse:
    """The current QR (replacing an expired one first) for the checkout page's script; once
    paid, the receipt too."""
    context = get_context(request)
    locale = i18n.request_locale(request, context.settings.default_locale).locale
    order, state = await _current(request, order_id)
    body = state.to_json(locale)
    receipt = await receipt_of(context, order, locale)
    body["receipt"] = receipt.to_json() if receipt else None
    return JSONResponse(body, headers=NO_STORE)


@router.get("/favicon.ico")
async def favicon(request: Request) -> RedirectResponse:
    url = templates_of(request).assets.url("favicon.svg")
    return RedirectResponse(url, status_code=301, headers={"Cache-Control": "max-age=86400"})
