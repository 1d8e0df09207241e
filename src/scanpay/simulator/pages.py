"""Server-rendered HTML of the simulator: the payer's phone page and the ``/sim`` overview.

Plain HTML and CSS, no script: the phone page is a form that POSTs back to itself, so it
works in any browser and in Playwright alike. Contract used by tests: buttons ``#pay`` and
``#cancel``; after acting, ``#result`` holds "Paid" or the reason it did not pay.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Final

from scanpay.simulator.ledger import Attempt, Notification, Order

_STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","Helvetica Neue",Arial,
sans-serif;background:#ededed;color:#111;line-height:1.4}
.phone{max-width:420px;margin:0 auto;min-height:100vh;background:#f7f7f7}
.bar{background:#2e2e2e;color:#fff;text-align:center;padding:14px;font-size:17px}
.card{background:#fff;margin:16px;padding:24px 20px;border-radius:8px;text-align:center}
.merchant{color:#555;font-size:15px}.amount{font-size:40px;font-weight:600;margin:14px 0}
.desc{color:#888;font-size:14px;margin-bottom:20px;word-break:break-all}
.number{color:#aaa;font-size:12px;margin-bottom:16px;word-break:break-all}
button{display:block;width:100%;padding:14px;margin:10px 0;border:0;border-radius:6px;
font-size:17px;cursor:pointer}
button:focus-visible{outline:3px solid #1aad19;outline-offset:2px}
#pay{background:#07c160;color:#fff}#cancel{background:#f2f2f2;color:#333}
details{margin-top:18px;text-align:left;color:#555;font-size:14px}
summary{cursor:pointer;padding:6px 0}
details button{font-size:15px;padding:10px;background:#f2f2f2;color:#333}
.hint{color:#999;font-size:12px;margin:4px 0 0}
#result{font-size:22px;font-weight:600;margin:10px 0}.ok{color:#07c160}.bad{color:#c0392b}
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
.empty{color:#999;padding:14px}
.resend{width:auto;padding:5px 12px;margin:0;font-size:13px;background:#e8e8e8;color:#222}
"""
_GOOD: Final = frozenset({"SUCCESS", "delivered", "REFUND"})
_WAIT: Final = frozenset({"NOTPAY", "USERPAYING", "pending"})


def _badge(text: str) -> str:
    tone = "s-good" if text in _GOOD else "s-wait" if text in _WAIT else "s-bad"
    if text in {"CLOSED", "REVOKED"}:
        tone = ""
    return f'<span class="badge {tone}">{escape(text)}</span>'


def _page(title: str, inner: str, *, wide: bool = False) -> str:
    body = (
        f'<div class="bar">scanpay WeChat Pay simulator</div><div class="wide">{inner}</div>'
        if wide
        else f'<div class="phone"><div class="bar">WeChat Pay (simulator)</div>{inner}</div>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def scan_page(order: Order, merchant_name: str) -> str:
    """Confirm-to-pay screen for one payable order."""
    return _page(
        "Confirm payment",
        '<div class="card">'
        f'<div class="merchant" id="merchant">{escape(merchant_name)}</div>'
        f'<div class="amount" id="amount">{yuan(order.total_fee)}</div>'
        f'<div class="desc" id="description">{escape(order.body)}</div>'
        f'<div class="number" id="out-trade-no">Order {escape(order.out_trade_no)}</div>'
        '<form method="post" action="scan">'
        f'<input type="hidden" name="code_url" value="{escape(order.code_url)}">'
        '<button id="pay" type="submit" name="outcome" value="success">Pay</button>'
        '<button id="cancel" type="submit" name="outcome" value="cancel">Cancel</button>'
        "<details><summary>Other outcomes</summary>"
        '<button id="insufficient-balance" type="submit" name="outcome" '
        'value="insufficient_balance">Insufficient balance</button>'
        '<p class="hint">The payment fails; the order stays unpaid and can be paid later.</p>'
        '<button id="user-paying" type="submit" name="outcome" value="user_paying">'
        "Enter password slowly (user paying)</button>"
        '<p class="hint">The order is USERPAYING for 30 simulated seconds, then paid.</p>'
        "</details></form></div>",
    )


def result_page(*, ok: bool, headline: str, detail: str = "") -> str:
    """After the payer acted (or could not): ``#result`` says what happened."""
    css = "ok" if ok else "bad"
    return _page(
        headline,
        '<div class="card">'
        f'<div id="result" class="{css}">{escape(headline)}</div>'
        f'<div class="desc">{escape(detail)}</div></div>',
    )


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
