"""Async HTTP clients over the protocol core: the only place scanpay sends bytes to WeChat."""

from __future__ import annotations

from scanpay.client.retry import RetryPolicy as RetryPolicy
from scanpay.client.v2 import V2Client as V2Client
from scanpay.client.v3 import V3Client as V3Client

__all__ = ["RetryPolicy", "V2Client", "V3Client"]
