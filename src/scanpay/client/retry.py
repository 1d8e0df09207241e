"""When and how long the client waits before repeating a WeChat Pay call.

Safe to repeat:

* a connection that failed before any byte was sent (``TransportError`` with code
  :data:`NOT_SENT`) — always;
* a :class:`~scanpay.errors.RetryableApiError` (SYSTEM_ERROR, FREQUENCY_LIMITED, 5xx) or a
  transport failure after sending — only for calls idempotent by their identifiers
  (``out_trade_no`` / ``out_refund_no``, reads); they are repeated with the same body.

Never repeated: protocol errors (bad signature, cannot decrypt, malformed) and other API errors.
Backoff is exponential with jitter; ``sleep`` and ``random`` are injected so tests need no clock.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from scanpay.errors import RetryableApiError, ScanpayError, TransportError

NOT_SENT: Final = "NOT_SENT"
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` counts the first try; delays grow ``base * multiplier**n`` up to ``cap``.

    ``jitter`` is the fraction of each delay drawn at random (0 = fixed, 1 = "full jitter").
    """

    attempts: int = 3
    base_delay: float = 0.25
    multiplier: float = 2.0
    max_delay: float = 4.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("attempts >= 1, base_delay >= 0, 0 <= jitter <= 1")

    def delay(self, retry_number: int, draw: float) -> float:
        """Seconds before retry ``retry_number`` (1-based); ``draw`` is uniform in [0, 1)."""
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (retry_number - 1))
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * draw


NO_RETRY: Final = RetryPolicy(attempts=1)


def is_retryable(error: ScanpayError, *, idempotent: bool) -> bool:
    if isinstance(error, TransportError):
        return error.code == NOT_SENT or idempotent
    if isinstance(error, RetryableApiError):
        return idempotent
    return False


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    what: str = "call",
) -> T:
    """Run ``call``; repeat it per ``policy`` while the failure is safe to repeat."""
    attempt = 1
    while True:
        try:
            return await call()
        except (TransportError, RetryableApiError) as error:
            if attempt >= policy.attempts or not is_retryable(error, idempotent=idempotent):
                raise
            pause = policy.delay(attempt, random())
            log.warning("%s failed (%s); retry %d in %.2fs", what, error.code, attempt, pause)
            attempt += 1
            await sleep(pause)
