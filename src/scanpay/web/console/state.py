"""What every console route shares (one per app, on ``app.state.console``), and the
extension points later parts plug into.

Extension points (each a plain list the owning part appends to when the app is built):

- ``timeline_sources``: ``async (order_id) -> list[TimelineEntry]``; more lines in an order's
  story (webhook deliveries, issue 11).
- ``attention_sources``: ``async (now) -> list[AttentionItem]``; more things in the alerts
  inbox (disabled webhook endpoints, issue 11; reconciliation differences, issue 14).
- ``order_actions``: :class:`OrderAction` buttons on an order's page, each a POST route of
  its owner's, guarded like the console's own (``require_operator`` + ``check_csrf`` + audit);
  e.g. "re-send webhooks" (support).
- ``nav_links``: more pages in the console's navigation (``/console/reconciliation``, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from jinja2 import Environment

from scanpay.config import Settings
from scanpay.domain.operators import Action, Role
from scanpay.domain.refunds import RefundService
from scanpay.domain.service import PaymentService
from scanpay.store.console_queries import ConsoleQueries, Figures
from scanpay.store.operators import OperatorStore
from scanpay.web.console.i18n import Translator
from scanpay.web.hub import ChangeHub
from scanpay.wechat.secret import Secret

R = TypeVar("R")


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # a short word shown as the entry's tag ("webhook", ...)
    title: str
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionItem:
    at: datetime
    kind: str
    title: str
    href: str | None = None


@dataclass(frozen=True)
class OrderAction:
    label: str  # a msgid of the console catalogue (or already translated text)
    path: str  # a format string with {order_id}
    needs: Action
    minimum: Role = Role.SUPPORT


TimelineSource = Callable[[str], Awaitable[list[TimelineEntry]]]
AttentionSource = Callable[[datetime], Awaitable[list[AttentionItem]]]


@dataclass
class ConsoleState:
    settings: Settings
    operators: OperatorStore
    queries: ConsoleQueries
    service: PaymentService
    refunds: RefundService
    hub: ChangeHub
    clock: Callable[[], datetime]
    templates: Environment
    translators: Mapping[str, Translator]
    zone: ZoneInfo
    api_v3_key: Secret | None = None
    timeline_sources: list[TimelineSource] = field(default_factory=list)
    attention_sources: list[AttentionSource] = field(default_factory=list)
    order_actions: list[OrderAction] = field(default_factory=list)
    nav_links: list[tuple[str, str]] = field(default_factory=list)
    # the last 7 days' figures (one join over a week of payments), kept for a minute
    figures_cache: dict[tuple[datetime, datetime], tuple[float, Figures]] = field(
        default_factory=dict
    )

    def local_time(self, value: datetime | None) -> str:
        """A time as the console shows it: in the console's time zone, to the second."""
        if value is None:
            return "—"
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    async def db(self, fn: Callable[..., R], *args: Any) -> R:
        """A blocking store call on a worker thread."""
        return await asyncio.to_thread(fn, *args)
