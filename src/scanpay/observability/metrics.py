"""Prometheus metrics (issue 9; the list and example queries: docs/observability.md).

The metric objects are module-level and registered in no registry of their own; each app
builds a :class:`~prometheus_client.CollectorRegistry` with them plus a collector that reads
its database and change hub at scrape time (reconciler backlog and lag, open status
streams). Several apps in one process (tests) share the counters; each scrape shows them.

Multi-process choice: one worker per process. Run several ``scanpay serve`` processes
behind the balancer and scrape each one (its ``/metrics`` or its metrics port); no
``PROMETHEUS_MULTIPROC_DIR``, whose mode drops custom collectors and needs a cleared
directory at every start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scanpay.store.refunds import refunds
from scanpay.store.tables import payment_attempts

HTTP_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
)  # fmt: skip

HTTP_DURATION: Final = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests served, by route template, method and status code.",
    ("http_route", "http_request_method", "http_response_status_code"),
    buckets=HTTP_BUCKETS,
    registry=None,
)
NOTIFICATIONS: Final = Counter(
    "scanpay_notifications",
    "WeChat Pay notifications received, by API and outcome.",
    ("api", "outcome"),
    registry=None,
)
TRANSITIONS: Final = Counter(
    "scanpay_order_transitions",
    "Order status changes, by source (notification, query, expiry, shop, refund) and trigger.",
    ("source", "trigger"),
    registry=None,
)
WECHAT_CALLS: Final = Histogram(
    "scanpay_wechat_call_duration_seconds",
    "Calls to WeChat Pay, by endpoint (path template) and result (HTTP status or error).",
    ("endpoint", "result"),
    buckets=HTTP_BUCKETS,
    registry=None,
)
CERTIFICATE_DOWNLOADS: Final = Counter(
    "scanpay_platform_certificate_refreshes",
    "Platform certificate downloads, by trigger (schedule, api, notification) and result.",
    ("trigger", "result"),
    registry=None,
)
PRUNED: Final = Counter(
    "scanpay_retention_pruned_rows",
    "Rows deleted by retention pruning, by kind.",
    ("kind",),
    registry=None,
)
SHARED: Final[tuple[Collector, ...]] = (
    HTTP_DURATION, NOTIFICATIONS, TRANSITIONS, WECHAT_CALLS, CERTIFICATE_DOWNLOADS, PRUNED,
)  # fmt: skip

PA = payment_attempts
_OPEN = ("creating", "active")


class ServiceCollector(Collector):
    """Read at scrape time: reconciler backlog and lag, unfinished refunds (from the
    database), open status streams."""

    def __init__(
        self,
        engine: sa.Engine,
        clock: Callable[[], datetime],
        open_streams: Callable[[], int],
        certificate_downloads: Callable[[], int] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._open_streams = open_streams
        self._certificate_downloads = certificate_downloads

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        query = sa.select(sa.func.count(), sa.func.min(PA.c.next_query_at)).where(
            PA.c.next_query_at.is_not(None), PA.c.next_query_at <= now
        )
        with self._engine.connect() as conn:
            due, oldest = conn.execute(query).one()
        lag = 0.0
        if oldest is not None:
            lag = max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "scanpay_reconciler_backlog",
            "Payment attempts due for an active query now.",
            value=float(due),
        )
        yield GaugeMetricFamily(
            "scanpay_reconciler_lag_seconds",
            "How long the oldest due payment attempt has waited for its query.",
            value=lag,
        )
        unfinished = sa.select(sa.func.count(), sa.func.min(refunds.c.created_at)).where(
            refunds.c.status.in_(("submitting", "processing", "abnormal"))
        )
        with self._engine.connect() as conn:
            pending, oldest_refund = conn.execute(unfinished).one()
        yield GaugeMetricFamily(
            "scanpay_refunds_unfinished",
            "Refunds submitting, processing or abnormal (not settled yet).",
            value=float(pending),
        )
        yield GaugeMetricFamily(
            "scanpay_refund_oldest_unfinished_age_seconds",
            "Age of the oldest unfinished refund (0 when there is none).",
            value=0.0 if oldest_refund is None else max(0.0, (now - oldest_refund).total_seconds()),
        )
        if self._certificate_downloads is not None:
            yield CounterMetricFamily(
                "scanpay_platform_certificate_downloads",
                "Platform certificate downloads made (scheduled, for API answers, and for "
                "notifications within the per-serial and per-sender limits).",
                value=float(self._certificate_downloads()),
            )
        yield GaugeMetricFamily(
            "scanpay_status_streams_open",
            "Order status streams (server-sent events) open now.",
            value=float(self._open_streams()),
        )


def build_registry(extra: Collector | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in SHARED:
        registry.register(collector)
    if extra is not None:
        registry.register(extra)
    return registry
