"""Structured logs (issue 9): one stream, text or JSON, request ids on every line.

* Every line carries ``request_id`` (the ``X-Request-ID`` of the request being served, taken
  from :data:`REQUEST_ID`; ``-`` outside a request), so the lines of one request, including
  its WeChat calls, can be found together.
* Named fields travel in ``extra`` (:data:`FIELDS`); :class:`TextFormatter` appends them as
  ``key=value``, :class:`JsonFormatter` writes one JSON object per line.
* :func:`notification_line`: the fields of the one line per notification, the same keys for
  v2 and v3 (``api``, ``outcome``, ``out_trade_no``, ``order_id``, ``client``, ``detail``).
* :func:`configure`: the root logger on one stream (stderr), uvicorn's loggers through it,
  uvicorn's access log off (scanpay logs one line per request itself) and httpx's per-call
  INFO line off (scanpay logs each WeChat call at DEBUG).

Nothing here ever receives a key, a signature or a decrypted payload.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from scanpay.observability import metrics

REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("scanpay_request_id", default=None)

FIELDS: Final = (
    "api", "outcome", "out_trade_no", "order_id", "client", "detail", "method", "path",
    "route", "status", "duration_ms", "endpoint", "result", "source", "wechat_request_id",
)  # fmt: skip
NOTIFICATION_KEYS: Final = ("api", "outcome", "out_trade_no", "order_id", "client", "detail")


def notification_line(
    api: str,
    outcome: str,
    *,
    client: str,
    out_trade_no: str | None = None,
    order_id: str | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """The ``extra`` of a notification's log line (every key present, v2 and v3 alike)."""
    return {
        "api": api,
        "outcome": outcome,
        "out_trade_no": out_trade_no or None,
        "order_id": order_id,
        "client": client or None,
        "detail": detail[:200],
    }


_notify_log = logging.getLogger("scanpay.web.notify")


def note_notification(
    api: str,
    outcome: str,
    *,
    client: str,
    out_trade_no: str | None = None,
    order_id: str | None = None,
    detail: str = "",
) -> None:
    """The one log line (and the count) of a notification that reached the domain."""
    fields = notification_line(
        api, outcome, client=client, out_trade_no=out_trade_no, order_id=order_id, detail=detail
    )
    level = logging.WARNING if outcome == "rejected" else logging.INFO
    _notify_log.log(level, "notification", extra=fields)
    metrics.NOTIFICATIONS.labels(api, outcome).inc()


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ... request_id=...`` (a terminal's default)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{name}={'-' if value is None or value == '' else value}"
            for name, value in _fields(record).items()
        )
        request_id = getattr(record, "request_id", None)
        tail = f" request_id={request_id}" if request_id else ""
        return f"{line} {extra}{tail}" if extra else f"{line}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``,
    ``request_id`` and the named fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(fmt: str = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Set up the process's logging (``scanpay serve``); see the module docstring."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)  # the root's level (uvicorn may set its own after)
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # scanpay's own line per request
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # what no line shows is not collected (the logging HOWTO's "Optimization" section):
    # caller's file and line, thread, process and multiprocessing names
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
