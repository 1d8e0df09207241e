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
body{margin:0;font-family:-apple-system,"PingFang SC","Helvetica Neue",Arial,sans-serif;
background:#ededed;color:#111}
.phone{max-width:420px;margin:0 auto;min-height:100vh;background:#f7f7f7}
.bar{background:#2e2e2e;color:#fff;text-align:center;padding:14px;font-size:17px}
.card{background:#fff;margin:16px;padding:24px 20px;border-radius:8px;text-align:center}
.merchant{color:#555;font-size:15px}.amount{font-size:40px;font-weight:600;margin:14px 0}
.desc{color:#888;font-size:14px;margin-bottom:20px;word-break:break-all}
button{display:block;width:100%;padding:14px;margin:10px 0;border:0;border-radius:6px;
font-size:17px;cursor:pointer}
#pay{background:#07c160;color:#fff}#cancel{background:#f2f2f2;color:#333}
#result{font-size:20px;font-weight:600;margin:10px 0}.ok{color:#07c160}.bad{color:#c0392b}
table{border-collapse:collapse;font-size:13px;margin:8px}td,th{border:1px solid #ccc;padding:4px}
.resend{width:auto;padding:4px 8px;margin:0;font-size:13px;background:#e0e0e0}
"""


def _page(title: str, inner: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><div class="phone"><div class="bar">WeChat Pay (simulator)</div>{inner}'
        "</div></body></html>"
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
        '<form method="post" action="scan">'
        f'<input type="hidden" name="code_url" value="{escape(order.code_url)}">'
        '<button id="pay" type="submit" name="outcome" value="success">Pay</button>'
        '<button id="cancel" type="submit" name="outcome" value="cancel">Cancel</button>'
        "</form></div>",
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
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def overview_page(
    orders: list[Order], notifications: list[tuple[Notification, list[Attempt]]], now: float
) -> str:
    """Everything in the ledger, for a person looking at ``/sim``."""
    order_rows = "".join(
        f"<tr><td>{escape(o.out_trade_no)}</td><td>{yuan(o.total_fee)}</td>"
        f"<td>{escape(o.body)}</td><td>{o.trade_state.value}</td>"
        f"<td>{escape(o.transaction_id or '')}</td><td>{_when(o.created_at)}</td></tr>"
        for o in reversed(orders)
    )
    note_rows = "".join(
        f"<tr><td>{n.id}</td><td>{escape(n.out_trade_no)}</td><td>{escape(n.url)}</td>"
        f"<td>{n.status}</td><td>{n.attempts}</td><td>{_when(n.next_at)}</td>"
        f"<td>{escape(a[-1].answer[:80] or a[-1].error[:80]) if a else ''}</td>"
        f'<td><form method="post" action="/sim/notifications/{n.id}/resend">'
        f'<button class="resend" id="resend-{n.id}" type="submit">Resend</button></form></td></tr>'
        for n, a in reversed(notifications)
    )
    return _page(
        "Simulator",
        f'<p style="margin:8px">Simulated time: {_when(now)}</p>'
        '<h3 style="margin:8px">Orders</h3><table><tr><th>out_trade_no</th><th>amount</th>'
        "<th>body</th><th>state</th><th>transaction_id</th><th>created</th></tr>"
        f"{order_rows}</table>"
        '<h3 style="margin:8px">Notifications</h3><table><tr><th>id</th><th>order</th>'
        "<th>url</th><th>status</th><th>attempts</th><th>next</th><th>last answer</th>"
        "<th>resend</th></tr>"
        f"{note_rows}</table>",
    )
