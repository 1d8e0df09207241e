"""``scanpay doctor``: check a shop's WeChat Pay notification handler against the simulator.

The shop (any language or framework) is pointed at a running simulator and has created an
unpaid order there; the simulator, acting as WeChat Pay, sends the order's ``notify_url`` a
series of notifications (``POST /sim/doctor``, :mod:`scanpay.simulator.doctor`) and judges
each answer. This command prints the report (``--format json`` for machines) and exits 0 when
every case passed, 1 when a case failed, 2 when the check could not run (simulator
unreachable, unknown or already paid order, bad options).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Final

import httpx

from scanpay.simulator.doctor import DEFAULT_DELAY_SECONDS, MAX_DELAY_SECONDS

MARKS: Final = {"pass": "PASS", "fail": "FAIL", "warn": "WARN"}
EXPECTED: Final = {
    "refuse": "must be refused",
    "ignore": "must be refused, or acknowledged and ignored",
    "acknowledge": "must be acknowledged",
}
# the run takes several round trips to the shop plus the delay
REQUEST_TIMEOUT: Final = 120.0 + MAX_DELAY_SECONDS


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--simulator", default="http://127.0.0.1:8090", help="simulator origin (URL)"
    )
    parser.add_argument(
        "--out-trade-no", required=True, help="an unpaid order the shop created at the simulator"
    )
    parser.add_argument(
        "--api", choices=["v2", "v3"], default=None, help="expected API (default: the order's)"
    )
    parser.add_argument(
        "--status-url",
        default=None,
        help="URL answering the order's status as JSON or text; {out_trade_no} is replaced",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=DEFAULT_DELAY_SECONDS,
        help=f"seconds before the delayed retry (default {DEFAULT_DELAY_SECONDS:g})",
    )
    parser.add_argument("--format", choices=["text", "json"], default="text", help="output")


def render_text(report: dict[str, Any]) -> str:
    """The report for a developer: one block per case, then a summary line."""
    lines = [
        f"scanpay doctor: API {report['api']} notifications for order {report['out_trade_no']}",
        f"notify_url: {report['notify_url']}",
        f"status URL: {report['status_url'] or '(none: give --status-url to check effects)'}",
        "",
    ]
    for case in report["cases"]:
        mark = MARKS[case["verdict"]]
        lines.append(f"[{mark}] {case['name']} ({EXPECTED[case['expect']]})")
        lines.append(f"  sent:     {case['sent']}")
        answers = case["answers"]
        shown = [_answer(a) for a in answers[:2]]
        more = f" (+{len(answers) - 2} more)" if len(answers) > 2 else ""
        lines.append(f"  answered: {'; '.join(shown)}{more}")
        lines.append(f"            acknowledged {case['acknowledged']} of {len(answers)}")
        if case["status_after"] is not None:
            lines.append(f"  status:   {case['status_note']}: {_short(case['status_after'])}")
        lines.append(f"  WeChat:   {case['wechat_next']}")
        lines.append(f"  verdict:  {mark}: {case['why']}")
        lines.append("")
    summary = report["summary"]
    lines.append(
        f"{summary['pass']} passed, {summary['fail']} failed, {summary['warn']} not judged"
        + ("" if report["ok"] else "  -> fix the FAIL cases above")
    )
    return "\n".join(lines)


def _answer(answer: dict[str, Any]) -> str:
    if answer["http_status"] is None:
        return f"no answer ({answer['error']})"
    body = _short(answer["body"])
    return f"HTTP {answer['http_status']} {body}".rstrip()


def _short(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def exit_status(report: dict[str, Any]) -> int:
    return 0 if report.get("ok") else 1


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.delay <= MAX_DELAY_SECONDS:
        print(f"scanpay doctor: --delay must be 0-{MAX_DELAY_SECONDS:g}", file=sys.stderr)
        return 2
    payload: dict[str, Any] = {"out_trade_no": args.out_trade_no, "delay_seconds": args.delay}
    if args.api:
        payload["api"] = args.api
    if args.status_url:
        payload["status_url"] = args.status_url
    url = args.simulator.rstrip("/") + "/sim/doctor"
    try:
        response = httpx.post(url, json=payload, timeout=REQUEST_TIMEOUT)
        report = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"scanpay doctor: cannot use {url}: {type(exc).__name__}", file=sys.stderr)
        return 2
    if not isinstance(report, dict) or "cases" not in report:
        error = report.get("error", "") if isinstance(report, dict) else ""
        message = report.get("message", "") if isinstance(report, dict) else ""
        print(f"scanpay doctor: cannot run: {error}: {message}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render_text(report))
    return exit_status(report)
