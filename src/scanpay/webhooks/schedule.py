"""When a failed delivery is tried again.

The default follows Svix and the Standard Webhooks example: at once, then 5 s, 5 min, 30 min,
2 h, 5 h, 10 h and 10 h (eight attempts over about 28 hours). A ``Retry-After`` on a 429 or
503 answer pushes the next attempt later (never earlier than the schedule), up to a day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

DEFAULT_SCHEDULE: Final = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_RETRY_AFTER: Final = 24 * 3600.0
SLOW_DOWN: Final = frozenset({429, 503})


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"0,5,300"`` -> delays in seconds before attempts 1, 2, 3; ValueError if not valid."""
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError("the retry schedule is comma-separated seconds, e.g. 0,5,300") from None
    if not delays or any(not 0 <= d <= 7 * 86400 for d in delays):
        raise ValueError("each retry delay is from 0 to 604800 seconds")
    return delays


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER)


def next_delay(
    schedule: Sequence[float], attempts_made: int, asked: float | None = None
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts (None: give up)."""
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made]
    return max(delay, asked) if asked is not None else delay
