"""The pieces that join the second stage's parts (added after all of them are built):
the webhook backlog on ``/metrics`` (issue 9), and in the console (issue 12) webhook
deliveries, their re-sending and disabled endpoints (issue 11) and the reconciliation
pages (issue 14)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from scanpay.observability.webhook_metrics import WebhookCollector
from scanpay.store.crosslink_queries import CrosslinkQueries
from scanpay.web.console import reconciliation_view, webhooks_view
from scanpay.web.console.state import ConsoleState


def install(app: FastAPI, engine: sa.Engine, clock: Callable[[], datetime]) -> None:
    queries = CrosslinkQueries(engine)
    registry: CollectorRegistry = app.state.metrics_registry
    registry.register(WebhookCollector(queries, clock))
    console: ConsoleState | None = getattr(app.state, "console", None)
    if console is None:  # SCANPAY_CONSOLE_ENABLED=false
        return
    app.state.console_crosslinks = queries
    console.timeline_sources.append(webhooks_view.timeline_source(queries, console.local_time))
    console.attention_sources.append(webhooks_view.attention_source(queries))
    console.order_actions.append(webhooks_view.RESEND_ACTION)
    console.nav_links.append(reconciliation_view.NAV_LINK)
    app.include_router(webhooks_view.router)
    app.include_router(reconciliation_view.router)
