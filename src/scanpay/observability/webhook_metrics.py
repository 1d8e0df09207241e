"""The webhook backlog on ``/metrics`` (issue 9 item 5, "webhook backlog when webhooks exist").

Read from the database at scrape time, so every instance of a cluster shows the same
figures (the outbox is shared): events not yet published, deliveries still pending, those
due now, and how long the oldest due one has waited. A growing ``due`` or age means the
delivery worker is not keeping up (or is not running: ``SCANPAY_WEBHOOKS_ENABLED``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scanpay.store.crosslink_queries import CrosslinkQueries


class WebhookCollector(Collector):
    def __init__(self, queries: CrosslinkQueries, clock: Callable[[], datetime]) -> None:
        self._queries = queries
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        backlog = self._queries.webhook_backlog(self._clock())
        yield GaugeMetricFamily(
            "scanpay_events_unpublished",
            "Events written but not yet published to the outbox (no deliveries made yet).",
            value=float(backlog.unpublished),
        )
        yield GaugeMetricFamily(
            "scanpay_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered, failed for good or cancelled.",
            value=float(backlog.pending),
        )
        yield GaugeMetricFamily(
            "scanpay_webhook_deliveries_due",
            "Pending webhook deliveries due now and not being sent (waiting for the worker).",
            value=float(backlog.due),
        )
        yield GaugeMetricFamily(
            "scanpay_webhook_oldest_due_age_seconds",
            "How long the oldest due webhook delivery has waited (0 when none is due).",
            value=backlog.oldest_due_seconds,
        )
