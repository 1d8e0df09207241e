"""Server-rendered HTML of the simulator: the payer's phone page and the ``/sim`` overview.

Plain HTML and CSS, no script: the phone page is a form that POSTs back to itself, so it
works in any browser and in Playwright alike. Contract used by tests: buttons ``#pay`` and
``#cancel``; after acting, ``#result`` holds "Paid" or the reason it did not pay. The phone
pages speak zh-CN or English (:mod:`scanpay.web.i18n`, catalogue domain ``simulator``: from
``?lang=``, the ``scanpay_lang`` cookie, ``Accept-Language``; zh-CN by default); a code of an
order already paid answers "already paid" in a neutral tone. The ``/sim`` overview is a
developer's table and stays in English.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Final

from scanpay.simulator.ledger import Attempt, Notification, Order
from scanpay.web import i18n

DOMAIN: Final = "simulator"


def N_(text: str) -> str:
    return text


_STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",Arial,
sans-serif;background:#ededed;color:#111;line-height:1.4}
.phone{max-width:420px;margin:0 auto;min-height:100vh;background:#f7f7f7}
.bar{background:#2e2e2e;color:#fff;text-align:center;padding:14px;font-size:17px}
.card{background:#fff;margin:16px;padding:24px 20px;border-radius:8px;text-align:center}
.merchant{color:#444;font-size:15px;font-weight:400;margin:0}
.amount{font-size:40px;font-weight:600;margin:14px 0}
.desc{color:#555;font-size:14px;margin-bottom:20px;word-break:break-all}
.number{color:#595959;font-size:12px;margin-bottom:16px;word-break:break-all}
button{display:block;width:100%;padding:14px;margin:10px 0;border:0;border-radius:6px;
font-size:17px;cursor:pointer}
button:focus-visible{outline:3px solid #1aad19;outline-offset:2px}
#pay{background:#07c160;color:#0b1f12;font-weight:600}#cancel{background:#f2f2f2;color:#333}
details{margin-top:18px;text-align:left;color:#555;font-size:14px}
summary{cursor:pointer;padding:6px 0}
details button{font-size:15px;padding:10px;background:#f2f2f2;color:#333}
.hint{color:#595959;font-size:12px;margin:4px 0 0}
#result{font-size:22px;font-weight:600;margin:10px 0}.ok{color:#05713a}.bad{color:#b3261e}
.neutral{color:#1d2129}
.wide{max-width:1200px;margin:0 auto;padding:0 16px 32px}
.wide h2{font-size:18px;margin:24px 0 8px}
.meta{color:#555;font-size:14px;margin:14px 0}.meta b{color:#111}
.meta a{color:#576b95}
.scroll{overflow-x:auto;background:#fff;border-radius:6px}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border-bottom:1px solid #e5e5e5;padding:7px 10px;text-align:left;vertical-align:top}
th{background:#fafafa;font-weight:600;color:#444;white-space:nowrap}
td.num,td.id{text-align:right;white-space:nowrap}td.id{text-align:left}td.mono,code{font-family:ui-monospace,Menlo,Consolas,
monospace;font-size:12px}td.when{white-space:nowrap;color:#555}
code{display:block;max-width:360px;white-space:pre-wrap;word-break:break-all;color:#333}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
white-space:nowrap;background:#eee;color:#444}
.s-good{background:#e3f6ea;color:#067a3d}.s-wait{background:#fff4d6;color:#8a5a00}
.s-bad{background:#fde6e4;color:#a8271b}
.empty{color:#595959;padding:14px}
.resend{width:auto;padding:5px 12px;margin:0;font-size:13px;background:#e8e8e8;color:#222}
"""
_GOOD: Final = frozenset({"SUCCESS", "delivered", "REFUND"})
_WAIT: Final = frozenset({"NOTPAY", "USERPAYING", "pending"})


def _badge(text: str) -> str:
    tone = "s-good" if text in _GOOD else "s-wait" if text in _WAIT else "s-bad"
    if text in {"CLOSED", "REVOKED"}:
        tone = ""
    return f'<span class="badge {tone}">{escape(text)}</span>'


def texts(locale: str) -> Callable[[str], str]:
    """gettext of the simulator's catalogue (domain ``simulator``) for ``locale``."""
    return i18n.translations(DOMAIN, locale).gettext


def _page(title: str, inner: str, *, wide: bool = False, locale: str = "en") -> str:
    _ = texts(locale)
    bar = escape(_("WeChat Pay (simulator)"))
    body = (
        f'<div class="bar">scanpay WeChat Pay simulator</div><main class="wide">{inner}</main>'
        if wide
        else f'<div class="phone"><div class="bar">{bar}</div><main>{inner}</main></div>'
    )
    return (
        f'<!doctype html><html lang="{escape(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def scan_page(order: Order, merchant_name: str, locale: str = "en") -> str:
    """Confirm-to-pay screen for one payable order."""
    _ = texts(locale)
    number = _("Order %(number)s") % {"number": order.out_trade_no}
    pay, cancel, other = escape(_("Pay")), escape(_("Cancel")), escape(_("Other outcomes"))
    short = escape(_("Insufficient balance"))
    return _page(
        _("Confirm payment"),
        '<div class="card">'
        f'<h1 class="merchant" id="merchant" translate="no">{escape(merchant_name)}</h1>'
        f'<div class="amount" id="amount">{yuan(order.total_fee)}</div>'
        f'<div class="desc" id="description" translate="no">{escape(order.body)}</div>'
        f'<div class="number" id="out-trade-no">{escape(number)}</div>'
        '<form method="post" action="scan">'
        f'<input type="hidden" name="code_url" value="{escape(order.code_url)}">'
        f'<input type="hidden" name="lang" value="{escape(locale)}">'
        f'<button id="pay" type="submit" name="outcome" value="success">{pay}</button>'
        f'<button id="cancel" type="submit" name="outcome" value="cancel">{cancel}'
        f"</button><details><summary>{other}</summary>"
        '<button id="insufficient-balance" type="submit" name="outcome" '
        f'value="insufficient_balance">{short}</button>'
        '<p class="hint">'
        + escape(_("The payment fails; the order stays unpaid and can be paid later."))
        + '</p><button id="user-paying" type="submit" name="outcome" value="user_paying">'
        + escape(_("Enter password slowly (user paying)"))
        + '</button><p class="hint">'
        + escape(_("The order is USERPAYING for 30 simulated seconds, then paid."))
        + "</p></details></form></div>",
        locale=locale,
    )


def result_page(*, ok: bool | None, headline: str, detail: str = "", locale: str = "en") -> str:
    """After the payer acted (or could not): ``#result`` (the page's ``h1``) says what
    happened; ``ok=None`` is neutral (e.g. the order is already paid)."""
    css = "ok" if ok else "neutral" if ok is None else "bad"
    return _page(
        headline,
        '<div class="card">'
        f'<h1 id="result" class="{css}">{escape(headline)}</h1>'
        f'<div class="desc">{escape(detail)}</div></div>',
        locale=locale,
    )


_REFUSALS: Final = {
    "ORDER_PAID": N_("This order is already paid. Nothing more to pay."),
    "ORDER_CLOSED": N_("This order is closed and can no longer be paid."),
    "ORDER_EXPIRED": N_("This order has expired and can no longer be paid."),
    "CODE_URL_EXPIRED": N_("This QR code has expired. Ask the shop for a new one."),
    "CODE_URL_NOT_FOUND": N_("This QR code is not a payment this simulator knows."),
    "ORDER_NOT_PAYABLE": N_("This order cannot be paid right now."),
}
_OUTCOMES: Final = {
    "cancel": N_("You cancelled. The order is still unpaid."),
    "insufficient_balance": N_("Insufficient balance. The order is still unpaid."),
    "user_paying": N_("Entering the password… The payment completes in a moment."),
}


def refusal_page(code: str, message: str, locale: str) -> str:
    """Why a code cannot be paid: "already paid" is neutral, the rest a failure."""
    _ = texts(locale)
    if code == "ORDER_PAID":
        return result_page(ok=None, headline=_("Already paid"), detail=_(_REFUSALS[code]),
                           locale=locale)  # fmt: skip
    detail = _(_REFUSALS[code]) if code in _REFUSALS else message
    return result_page(ok=False, headline=_("Cannot pay"), detail=detail, locale=locale)


def outcome_page(outcome: str, paid: bool, amount: str, merchant: str, locale: str) -> str:
    _ = texts(locale)
    if paid:
        detail = _("%(amount)s paid to %(merchant)s") % {"amount": amount, "merchant": merchant}
        return result_page(ok=True, headline=_("Paid"), detail=detail, locale=locale)
    detail = _(_OUTCOMES[outcome]) if outcome in _OUTCOMES else outcome
    headline = _("Payment in progress") if outcome == "user_paying" else _("Not paid")
    return result_page(ok=False, headline=headline, detail=detail, locale=locale)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<div class="scroll"><div class="empty">{escape(empty)}</div></div>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _last_answer(attempts: list[Attempt]) -> str:
    if not attempts:
        return ""
    last = attempts[-1]
    status = f"HTTP {last.http_status} " if last.http_status is not None else ""
    text = (last.answer or last.error)[:200]
    return f"{escape(status)}<code>{escape(text)}</code>"


def overview_page(
    orders: list[Order], notifications: list[tuple[Notification, list[Attempt]]], now: float
) -> str:
    """Everything in the ledger, for a person looking at ``/sim`` (times in UTC)."""
    order_rows = [
        f"<tr><td class='mono id'>{escape(o.out_trade_no)}</td>"
        f"<td class=num>{yuan(o.total_fee)}</td>"
        f"<td>{escape(o.body)}</td><td>{_badge(o.trade_state.value)}</td><td>{o.api}</td>"
        f"<td class=mono>{escape(o.transaction_id or '')}</td>"
        f"<td class=when>{_when(o.created_at)}</td></tr>"
        for o in reversed(orders)
    ]
    note_rows = [
        f"<tr><td class=num>{n.id}</td><td>{escape(n.kind)}</td>"
        f"<td class='mono id'>{escape(n.out_trade_no)}</td><td class=mono>{escape(n.url)}</td>"
        f"<td>{_badge(n.status)}</td><td class=num>{n.attempts}</td>"
        f"<td class=when>{_when(n.next_at)}</td><td>{_last_answer(a)}</td>"
        f'<td><form method="post" action="/sim/notifications/{n.id}/resend">'
        f'<button class="resend" id="resend-{n.id}" type="submit">Resend</button></form></td></tr>'
        for n, a in reversed(notifications)
    ]
    return _page(
        "scanpay simulator",
        f'<p class="meta">Simulated time <b>{_when(now)} UTC</b> · {len(orders)} orders · '
        f"{len(notifications)} notifications · "
        '<a href="/sim">refresh</a> · JSON: <a href="/sim/orders">orders</a>, '
        '<a href="/sim/notifications">notifications</a>, <a href="/sim/faults">faults</a></p>'
        "<h2>Orders</h2>"
        + _table(
            ["out_trade_no", "amount", "description", "state", "API", "transaction_id", "created"],
            order_rows,
            "No orders yet.",
        )
        + "<h2>Notifications</h2>"
        + _table(
            [
                "id",
                "kind",
                "order",
                "notify_url",
                "status",
                "attempts",
                "next attempt",
                "last answer",
                "",
            ],
            note_rows,
            "No notifications yet.",
        ),
        wide=True,
    )
