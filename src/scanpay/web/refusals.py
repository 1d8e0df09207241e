"""What ``/notify/*`` does with input it refuses: one answer per kind, bounded storage, and a
per-source limit (issue 9).

* :data:`REFUSALS`: the outcome recorded for each kind of refused notification and its HTTP
  status, the same for API v2 and v3 (v2 answers in WeChat's XML, v3 in JSON).
* :class:`SourceLimiter`: a token bucket per source address for *refused* notifications
  (``SCANPAY_NOTIFY_REFUSALS_PER_MINUTE``). A source whose bucket is empty gets ``429`` for
  any notification, before verification, and nothing is stored. Addresses and networks in
  ``SCANPAY_NOTIFY_ALLOW_LIST`` (WeChat's notification senders) are never limited. The source
  is the TCP peer: behind a reverse proxy, that is the proxy (see docs/observability.md).
* :class:`Doorkeeper`: records a refusal as its first bytes, size and SHA-256
  (:func:`scanpay.store.housekeeping.refused_values`), logs one line with the sender's
  address, counts it, and tells the route which status to answer.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

from starlette.requests import Request

from scanpay.observability import metrics
from scanpay.observability.logs import notification_line
from scanpay.store.housekeeping import insert_refused, refused_values
from scanpay.store.migrate import writer
from scanpay.store.sql import SqlStore

log = logging.getLogger("scanpay.web.notify")

REFUSALS: Final[Mapping[str, int]] = {
    "rate_limited": 429,  # not stored
    "wrong_content_type": 415,
    "not_configured": 404,
    "unsigned": 401,
    "bad_signature": 401,
    "unknown_serial": 401,
    "stale": 401,
    "decryption_failed": 400,
    "malformed": 400,
    "unverifiable": 503,  # the platform certificates could not be fetched: WeChat retries
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"1.2.3.4, 10.0.0.0/8"`` → networks; ValueError names the entry that is wrong."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry[:64]!r} is not an IP address or network") from None
    return tuple(networks)


def source_key(address: str) -> str:
    """The bucket of an address: itself for IPv4, its /64 for IPv6 (one host has many)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class SourceLimiter:
    """Token buckets of ``per_minute`` refusals per source (see the module docstring)."""

    def __init__(
        self,
        per_minute: int,
        allow: Sequence[Network] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.allow = tuple(allow)
        self._clock = clock
        self._max = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allowed(self, address: str) -> bool:
        """On the allow-list: never limited."""
        if not self.allow:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.allow)

    def _tokens(self, key: str) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def exhausted(self, address: str) -> bool:
        if self.allowed(address):
            return False
        return self._tokens(source_key(address)) < 1.0

    def spend(self, address: str) -> None:
        if self.allowed(address):
            return
        key = source_key(address)
        self._buckets[key] = (max(0.0, self._tokens(key) - 1.0), self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


class Doorkeeper:
    """Per app: the limiter, and how refused bodies are stored."""

    def __init__(
        self,
        store: SqlStore,
        limiter: SourceLimiter,
        keep_bytes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.keep_bytes = keep_bytes
        self._clock = clock
        self._writer = writer(store.engine)

    def limited(self, request: Request, api: str) -> bool:
        """True (and counted) when this sender is past its refusals: answer 429."""
        client = client_address(request)
        if not self.limiter.exhausted(client):
            return False
        metrics.NOTIFICATIONS.labels(api, "rate_limited").inc()
        log.debug("notify refused", extra=notification_line(api, "rate_limited", client=client))
        return True

    async def refuse(
        self, request: Request, api: str, body: bytes, outcome: str, detail: str
    ) -> int:
        """Record, log and count a refusal; its HTTP status."""
        client = client_address(request)
        self.limiter.spend(client)
        values = refused_values(
            api, body, outcome, detail, keep_bytes=self.keep_bytes, now=self._clock(), client=client
        )
        await self.store.run_blocking(self._insert, values)
        metrics.NOTIFICATIONS.labels(api, outcome).inc()
        fields = notification_line(api, outcome, client=client, detail=detail)
        log.warning("notify refused", extra=fields)
        return REFUSALS[outcome]

    def _insert(self, values: dict[str, object]) -> None:
        with self._writer.begin() as conn:
            insert_refused(conn, dict(values))


def get_doorkeeper(request: Request) -> Doorkeeper:
    keeper: Doorkeeper = request.app.state.doorkeeper
    return keeper
