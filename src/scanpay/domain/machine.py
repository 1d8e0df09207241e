"""The order state machine: one table, and the only place that decides a status change.

``TRANSITIONS[(from_status, trigger)] = to_status``. Applying a trigger to an order whose
status is the one that trigger leads to is a no-op (notifications repeat; a query races a
notification); anything else not in the table raises :class:`InvalidTransitionError`.
:func:`mermaid` draws the table for docs/state-machine.md; ``python -m
scanpay.domain.machine`` prints the generated part of that document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from scanpay.domain.model import EventType, OrderStatus
from scanpay.errors import InvalidTransitionError


class Trigger(StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    CLOSE = "close"
    EXPIRE = "expire"
    REFUND_PARTIAL = "refund_partial"
    REFUND_FULL = "refund_full"


S = OrderStatus
T = Trigger

TRANSITIONS: Final[Mapping[tuple[OrderStatus, Trigger], OrderStatus]] = {
    (S.PENDING, T.PAYMENT_SUCCEEDED): S.PAID,
    (S.PENDING, T.CLOSE): S.CLOSED,
    (S.PENDING, T.EXPIRE): S.EXPIRED,
    (S.PAID, T.REFUND_PARTIAL): S.PARTIALLY_REFUNDED,
    (S.PAID, T.REFUND_FULL): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, T.REFUND_FULL): S.REFUNDED,
}

INITIAL: Final = OrderStatus.PENDING

# Statuses after which the shopper's checkout has nothing more to wait for.
SETTLED: Final = frozenset(OrderStatus) - {OrderStatus.PENDING}

# The event row each target status is recorded as.
EVENT_FOR: Final[Mapping[OrderStatus, EventType]] = {
    S.PAID: EventType.PAID,
    S.CLOSED: EventType.CLOSED,
    S.EXPIRED: EventType.EXPIRED,
    S.PARTIALLY_REFUNDED: EventType.PARTIALLY_REFUNDED,
    S.REFUNDED: EventType.REFUNDED,
}


@dataclass(frozen=True)
class Step:
    """The result of applying a trigger: ``to_status`` is None for a no-op."""

    from_status: OrderStatus
    trigger: Trigger
    to_status: OrderStatus | None

    @property
    def changes(self) -> bool:
        return self.to_status is not None


def _leads_to(trigger: Trigger) -> frozenset[OrderStatus]:
    return frozenset(to for (_, t), to in TRANSITIONS.items() if t is trigger)


def step(status: OrderStatus, trigger: Trigger) -> Step:
    """Decide what ``trigger`` does to an order in ``status``."""
    target = TRANSITIONS.get((status, trigger))
    if target is not None:
        return Step(status, trigger, target)
    if status in _leads_to(trigger):
        return Step(status, trigger, None)
    raise InvalidTransitionError(f"cannot {trigger.value} an order that is {status.value}")


def is_settled(status: OrderStatus) -> bool:
    return status in SETTLED


def mermaid() -> str:
    """The table as a Mermaid state diagram (deterministic: table order)."""
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL.value}"]
    for (source, trigger), target in TRANSITIONS.items():
        lines.append(f"    {source.value} --> {target.value}: {trigger.value}")
    return "\n".join(lines) + "\n"


def table_markdown() -> str:
    """The table as a Markdown table (deterministic: table order)."""
    rows = ["| from | trigger | to | event |", "|---|---|---|---|"]
    for (source, trigger), target in TRANSITIONS.items():
        rows.append(f"| {source.value} | {trigger.value} | {target.value} | {EVENT_FOR[target]} |")
    return "\n".join(rows) + "\n"


def generated_doc() -> str:
    """The part of docs/state-machine.md drawn from the table (a test keeps them equal)."""
    return "```mermaid\n" + mermaid() + "```\n\n" + table_markdown()


if __name__ == "__main__":
    print(generated_doc(), end="")
