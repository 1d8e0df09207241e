"""One v3 API call as data: method, request target and the exact body bytes to send.

Builders return an :class:`ApiRequest`; the client signs ``(method, url, body)`` and sends
exactly ``body``. ``url`` is the path plus query, as it goes on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    url: str
    body: bytes = b""
    #: True when the call may be repeated with the same identifiers (see client/retry.py)
    idempotent: bool = False
    #: True when the response is signed by WeChat Pay (false for bill files)
    signed_response: bool = True


def path_segment(value: str) -> str:
    """Percent-encode one path parameter (``|`` and ``*`` are legal in ``out_trade_no``)."""
    return quote(value, safe="")


def with_query(path: str, params: dict[str, str]) -> str:
    present = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(present)}" if present else path
